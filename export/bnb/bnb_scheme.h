#pragma once
// The bitsandbytes 4-bit scheme: the tensors transformers saves for a load_in_4bit model
// (transformers 5.17, bitsandbytes 0.50.2; observed with save_pretrained on CPU): per
// quantized linear `<module>.weight` uint8 [ceil(n/2), 1] and, under `<module>.weight.`,
// the QuantState.as_dict(packed=True) tensors below. Shared by export/bnb/bnb_writer.cpp and
// export/bnb/bnb_reader.cpp.
#include <string>

namespace moeq::bnb_scheme {

// Suffixes after `<module>.weight.`; the quant_state one ends in `__nf4` or `__fp4`.
constexpr const char* kAbsmax = "absmax";                  // F32 [blocks], U8 [blocks] with double quant
constexpr const char* kQuantMap = "quant_map";             // F32 [16]
constexpr const char* kNestedAbsmax = "nested_absmax";     // F32 [ceil(blocks / 256)]
constexpr const char* kNestedQuantMap = "nested_quant_map";  // F32 [256]
constexpr const char* kQuantStatePrefix = "quant_state.bitsandbytes__";  // U8 [len]: json.dumps text

inline std::string quant_state_suffix(const std::string& quant_type) { return kQuantStatePrefix + quant_type; }

// Whether transformers keeps `module` unquantized for an llm_int8_skip_modules entry
// (quantizers_utils.should_convert_module: re.match(entry + "\."), re.match(entry), or
// module.endswith(entry)). Entries are module names, where '.' is a regex wildcard, or
// the escaped, `$`-anchored form `a\.b\.c$` (what the writer emits when a plain name
// would also match a quantized module, e.g. `mlp.gate` matching `mlp.gate_proj`).
// Only these two shapes are understood; anything else throws moeq::Error.
bool skip_entry_matches(const std::string& entry, const std::string& module);

// The escaped, `$`-anchored entry that skips exactly `module` and nothing else.
std::string anchored_skip_entry(const std::string& module);

}  // namespace moeq::bnb_scheme
