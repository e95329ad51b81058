#pragma once
// compressed-tensors 0.20.0 config groups for moeq's formats, shared by the export writer
// and `moeq verify`. Each is what llm-compressor writes for the matching preset (W4A16,
// W4A16_ASYM, W8A16, NVFP4A16 / NVFP4, MXFP4A16, FP8 weights), and `format` is what
// compressed-tensors' infer_module_format gives for that scheme on a Linear.
#include <nlohmann/json.hpp>
#include <string>

#include "formats/format.h"

namespace moeq {

constexpr const char* kCtVersion = "0.20.0";

struct CtScheme {
  std::string format;      // pack-quantized, nvfp4-pack-quantized, ...
  nlohmann::json weights;  // QuantizationArgs as compressed-tensors dumps them
  nlohmann::json input;    // null when activations stay unquantized
};

// The compressed-tensors layout family of a format, from its traits (not its name): packed
// integers (pack-quantized), E2M1 under E4M3 block scales and a global scale
// (nvfp4-pack-quantized), E2M1 under E8M0 block scales (mxfp4-pack-quantized), E4M3 elements
// without blocks (float- / naive-quantized). None for the rest and for unknown names.
enum class CtFamily { None, PackedInt, Nvfp4Pack, Mxfp4Pack, Float8 };
CtFamily ct_family(const FormatTraits& t);
CtFamily ct_family(const std::string& format);

// Throws moeq::Error when the format (or activation quantization of it) has no
// compressed-tensors form that moeq writes.
CtScheme ct_scheme_for(const std::string& format, const FormatParams& p, bool input_quant);

// The way back: the moeq format and params of a config group's scheme. Throws moeq::Error
// naming the group when no moeq format matches.
struct CtGroupFormat {
  std::string format;
  FormatParams params;
  bool input_quant = false;  // static activation scales stored (input_global_scale / input_scale)
};
CtGroupFormat moeq_format_of(const std::string& group_name, const nlohmann::json& group);

// A config group target for every module of this shape: `model.layers.3.mlp.experts.17.gate_proj`
// -> `re:model\.layers\.\d+\.mlp\.experts\.\d+\.gate_proj$`. A multimodal checkpoint's
// `model.language_model.` prefix becomes `(?:model\.language_model|language_model\.model)\.`:
// vLLM renames it (gemma4_mm.py, qwen3_vl.py / qwen3_5.py hf_to_vllm_mapper) but keeps `re:`
// targets as written (compressed_tensors.py apply_vllm_mapper), so the regex must match both.
std::string ct_module_regex(const std::string& module);

}  // namespace moeq
