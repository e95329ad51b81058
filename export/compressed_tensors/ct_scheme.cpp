#include "export/compressed_tensors/ct_scheme.h"

#include <cctype>

#include "core/error.h"

namespace moeq {
namespace {

using nlohmann::json;

json fp8_args(const std::string& strategy) {
  return {{"dynamic", false}, {"group_size", nullptr}, {"num_bits", 8},   {"strategy", strategy},
          {"symmetric", true}, {"type", "float"}};
}

json nvfp4_args() {
  return {{"dynamic", false},    {"group_size", 16},  {"num_bits", 4},   {"scale_dtype", "torch.float8_e4m3fn"},
          {"strategy", "tensor_group"}, {"symmetric", true}, {"type", "float"}};
}

std::string str(const json& j, const char* key) { return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : ""; }
int64_t num(const json& j, const char* key) { return j.contains(key) && j[key].is_number_integer() ? j[key].get<int64_t>() : -1; }

// The registered format of `family` with `bits`-bit elements, or "".
std::string format_of(CtFamily family, int64_t bits) {
  const QuantFormat* f = find_format_where([&](const FormatTraits& t) { return ct_family(t) == family && t.bits == bits; });
  return f ? f->name() : "";
}

}  // namespace

CtFamily ct_family(const FormatTraits& t) {
  if (t.kind == ElementKind::Int) return CtFamily::PackedInt;
  if (t.kind != ElementKind::Float) return CtFamily::None;
  if (t.bits == 4 && t.block_scale == BlockScale::E4M3 && t.global_scale) return CtFamily::Nvfp4Pack;
  if (t.bits == 4 && t.block_scale == BlockScale::E8M0) return CtFamily::Mxfp4Pack;
  if (t.bits == 8 && t.block == 0) return CtFamily::Float8;
  return CtFamily::None;
}

CtFamily ct_family(const std::string& format) {
  const QuantFormat* f = find_format(format);
  return f ? ct_family(f->traits()) : CtFamily::None;
}

CtScheme ct_scheme_for(const std::string& format, const FormatParams& p, bool input_quant) {
  CtScheme s;
  s.input = nullptr;
  const CtFamily family = ct_family(format);
  if (family == CtFamily::PackedInt) {
    const int bits = format_by_name(format).traits().bits;
    if (input_quant)
      throw Error("compressed-tensors export writes " + format + " weight-only (W" + std::to_string(bits) +
                  "A16): drop input_quant from the rule, or set weight_only: true");
    s.format = "pack-quantized";
    s.weights = {{"dynamic", false}, {"group_size", p.block_size == 0 ? 128 : p.block_size},
                 {"num_bits", bits}, {"strategy", "group"}, {"symmetric", p.symmetric}, {"type", "int"}};
  } else if (family == CtFamily::Nvfp4Pack) {
    s.format = "nvfp4-pack-quantized";
    s.weights = nvfp4_args();
    if (input_quant) {  // the NVFP4 preset: per-tensor global scale, dynamic per-block scales
      s.input = nvfp4_args();
      s.input["dynamic"] = "local";
      s.input["observer"] = "static_minmax";
    }
  } else if (family == CtFamily::Mxfp4Pack) {
    if (input_quant)
      throw Error("compressed-tensors export writes mxfp4 weight-only (MXFP4A16): drop input_quant from the rule, or set weight_only: true");
    s.format = "mxfp4-pack-quantized";
    s.weights = {{"dynamic", false}, {"group_size", 32},  {"num_bits", 4},   {"scale_dtype", "torch.uint8"},
                 {"strategy", "group"}, {"symmetric", true}, {"type", "float"}};
  } else if (family == CtFamily::Float8) {
    s.weights = fp8_args(p.granularity == "channel" ? "channel" : "tensor");
    // compressed-tensors picks float-quantized only when activations are quantized too.
    s.format = input_quant ? "float-quantized" : "naive-quantized";
    if (input_quant) {
      s.input = fp8_args("tensor");
      s.input["observer"] = "static_minmax";
    }
  } else {
    throw Error("format " + format + " has no compressed-tensors layout in moeq (int4, int8, nvfp4, mxfp4, fp8; use export: bnb for nf4/fp4)");
  }
  return s;
}

CtGroupFormat moeq_format_of(const std::string& name, const nlohmann::json& group) {
  const json w = group.value("weights", json());
  if (!w.is_object()) throw Error("quantization_config group " + name + ": no weights scheme");
  const std::string type = str(w, "type"), strategy = str(w, "strategy");
  const int64_t bits = num(w, "num_bits"), gs = num(w, "group_size");
  CtGroupFormat f;
  if (type == "int" && (bits == 4 || bits == 8) && strategy == "group" && gs > 0) {
    f.format = format_of(CtFamily::PackedInt, bits);
    f.params.block_size = gs;
    f.params.symmetric = w.value("symmetric", true);
  } else if (type == "float" && bits == 4 && gs == 16 && strategy == "tensor_group") {
    f.format = format_of(CtFamily::Nvfp4Pack, 4);
  } else if (type == "float" && bits == 4 && gs == 32 && strategy == "group") {
    f.format = format_of(CtFamily::Mxfp4Pack, 4);
  } else if (type == "float" && bits == 8 && (strategy == "tensor" || strategy == "channel")) {
    f.format = format_of(CtFamily::Float8, 8);
    f.params.granularity = strategy;
  } else {
    throw Error("quantization_config group " + name + ": weights " + w.dump() +
                " match no moeq format (int4/int8 group, nvfp4, mxfp4, fp8 tensor/channel): not verifiable");
  }
  const json in = group.value("input_activations", json());
  f.input_quant = in.is_object() && !(in.contains("dynamic") && in["dynamic"].is_boolean() && in["dynamic"].get<bool>());
  return f;
}

std::string ct_module_regex(const std::string& module) {
  static const std::string kMultimodal = "model.language_model.";
  std::string out = "re:", part, rest = module;
  if (module.rfind(kMultimodal, 0) == 0) {
    out += "(?:model\\.language_model|language_model\\.model)\\.";
    rest = module.substr(kMultimodal.size());
  }
  auto flush = [&](bool last) {
    const bool digits = !part.empty() && part.find_first_not_of("0123456789") == std::string::npos;
    if (digits) out += "\\d+";
    else
      for (char c : part) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '_') ? std::string(1, c) : std::string("\\") + c;
    out += last ? "$" : "\\.";
    part.clear();
  };
  for (char c : rest) {
    if (c == '.') flush(false);
    else part += c;
  }
  flush(true);
  return out;
}

}  // namespace moeq
