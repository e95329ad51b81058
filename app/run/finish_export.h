#pragma once
// The last stage of `moeq quantize`, once every tensor is in the shards: config.json with the
// consumer's quantization_config, the source's other files (tokenizer, generation config...),
// and the lines the run prints about what it did.
#include <string>

#include "app/run/batches.h"
#include "app/run/run_plan.h"
#include "export/report.h"
#include "model/model.h"

namespace moeq {

// config.json (the writer adds quantization_config) and every other regular file of the source
// directory but its safetensors, index, report and marker files, into the export directory.
void write_config_and_side_files(const std::string& out_dir, const Model& model, const RunPlan& run);

// The MXFP4 -> NVFP4 and GPTQ lines (printed; GPTQ fallbacks become report warnings).
void note_conversions_and_gptq(const RunPlan& run, const SourceConversionCounts& conversions, ReportData& report);

}  // namespace moeq
