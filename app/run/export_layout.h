#pragma once
// The tensors an export will hold, planned before anything is quantized, so the shard
// files can be created first and every part written as soon as the device returns it
// (ShardWriter::stream). The parts' dtypes and shapes come from formats/part_specs.h;
// the export writer's own write() is run on meta tensors of those shapes.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "export/writer.h"
#include "io/checkpoint.h"
#include "io/safetensors_writer.h"
#include "app/run/batches.h"
#include "calib/calibrators/input_scales.h"

namespace moeq {

// The order an export holds its tensors in: (1) copy-through tensors (no quantized site:
// name and bytes kept), (2) unquantized sites inside partly quantized fused stacks (per
// expert), (3) the quantized sites, job by job (plan_jobs).
struct ExportOrder {
  std::vector<std::string> copy_through;
  std::vector<const SitePlan*> split_sites;
  std::vector<std::vector<SiteBatch>> jobs;
};
ExportOrder export_order(const Checkpoint& ck, const Plan& plan);

// What the writer is handed for site i of batch b quantized as q (the pipeline and the
// layout plan build it the same way).
QuantizedSite quantized_site(const SiteBatch& b, size_t i, const QuantizedTensor& q,
                             const std::map<std::string, InputScale>& in_scales);

// The export's tensors in that order, or nullopt, with *why_not saying why, when the
// writer or a format cannot lay out its tensors before quantizing.
std::optional<std::vector<TensorSpec>> plan_export_layout(const Checkpoint& ck, const ExportOrder& order,
                                                          const ExportWriter& writer,
                                                          const std::map<std::string, InputScale>& in_scales,
                                                          std::string* why_not);

}  // namespace moeq
