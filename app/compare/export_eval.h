#pragma once
// compare --exports: an existing export (moeq's, NVIDIA ModelOpt's export_hf_checkpoint,
// llm-compressor's compressed-tensors, bitsandbytes 4-bit) evaluated by moeq's own forward against
// its source. The export is read through its layout's verify reader (export/reader.h); the forward
// runs the source's config with
//   - every linear the export holds: decoded by the moeq format that reads it (quantized) or its
//     stored weight (unquantized), in place of the source's;
//   - every other tensor the forward reads (the source's aux tensors: norms, biases, ...) from
//     the export too: the export must store each under the source's name and shape (any dtype),
//     and its values are the ones used, so an export that changed them (AWQ's scales folded into
//     a norm, a bias divided by a scale) is evaluated as it is; the variant counts how many were
//     taken and how many differ from the source's (ExportAux, a warning and report.json);
//   - weight errors of a moeq AWQ export (moeq_awq/scales.safetensors) against the source folded
//     with those scales, as compare --recipes and verify --source measure them;
//   - for linears whose input the export quantizes (W4A4 / W8A8), the input fake-quantized with
//     the export's own static input scale, per expert (app/compare/act_fake_quant.h math):
//     ModelOpt `input_scale`, compressed-tensors `input_scale` (FP8) or 1 / `input_global_scale`
//     (NVFP4). Where gate and up carry different scales for their one input, the larger is used
//     (what vLLM does with a fused gate_up) and the variant says so.
// Anything not understood (a tensor no reader or plugin rule claims, a scheme no moeq format
// reads, a site the source lacks, a source tensor the export lacks) is an error of one line
// naming the file and the tensor: there is no fallback to the source's weight.
#include <ATen/ATen.h>

#include <string>

#include "app/compare/compare.h"
#include "app/compare/eval_outputs.h"
#include "app/compare/input_transform.h"
#include "model/model.h"

namespace moeq {

struct ExportEval {
  Variant variant;           // name, source (the directory), layout, formats, sizes, per-site weight error
  WeightTransform weights;   // every linear from the export (decoded on the forward's device)
  AuxTransform aux;          // every aux tensor (norm, bias, ...) from the export
  InputTransforms inputs;    // the export's input quantization (empty: weights only)
};

// `name` labels the variant; `dir` is the export. The variant's summaries are filled
// (compare.h summarize_variant).
ExportEval open_export_eval(const Model& source, const std::string& name, const std::string& dir, int worst_experts);

}  // namespace moeq
