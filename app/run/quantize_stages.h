#pragma once
// The quantized jobs of an export, in three overlapping stages: a loader thread gathers each
// job's stacks into (pinned) host memory (on a CUDA device, a quantized source's stored bytes,
// decoded there: app/run/batches.h gather_for_device), the calling thread moves them to the
// device and quantizes them (one sync per stack, for the NaN check, and one for the results' copy back),
// a writer thread hands the results to the export writer (streaming: straight into the
// files). When the shards stream, a fourth thread writes the copy-through tensors meanwhile
// (they land in other shards than most quantized parts, so the two writers rarely wait for
// the same file). The first error stops every stage and is rethrown.
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "app/run/batches.h"
#include "calib/calibrators/input_scales.h"
#include "core/progress.h"
#include "export/shard_writer.h"
#include "export/writer.h"
#include "io/checkpoint.h"

namespace moeq {

struct StageInputs {
  const Checkpoint& ck;
  const std::vector<std::vector<SiteBatch>>& jobs;
  at::Device device;
  const ExportWriter& writer;
  ShardWriter& shards;
  ShardWriter* dump;  // --dump-dequant: moeq's own dequantization of every site, or null
  const std::map<std::string, InputScale>& in_scales;
  Progress& progress;
  std::function<void()> write_copy_through;  // run by a thread of its own when the shards stream
};

// Busy seconds per stage (MOEQ_TIMING=1 prints them): where an export's time goes.
struct StageTimes {
  double load = 0, device = 0, write = 0, copy = 0, total = 0;
  // What went to the device: bytes uploaded, stacks in all, and those uploaded as their
  // quantized source's bytes (FP8 block, MXFP4) and decoded there (batches.h: GatheredStack).
  int64_t uploaded_bytes = 0, stacks = 0, source_stacks = 0;
  int64_t downloaded_bytes = 0;  // the quantized parts copied back
};

struct StageResults {
  std::map<std::string, uint64_t> bytes_after;  // site name -> bytes written for it
  SourceConversionCounts conversions;            // MXFP4 source -> NVFP4 blocks
  StageTimes times;
};

StageResults run_quantize_stages(const StageInputs& in);

}  // namespace moeq
