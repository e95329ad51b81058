// bitsandbytes 4-bit export: the checkpoint transformers saves for a load_in_4bit model
// (export/bnb/bnb_scheme.h has the tensors), loadable by transformers (where the quantized
// modules are nn.Linear), vLLM's bitsandbytes loader and bitsandbytes itself. Experts one
// module per expert. config.json's quantization_config is BitsAndBytesConfig.to_dict() for
// the recipe's quant type and double quantization; llm_int8_skip_modules lists every
// module left unquantized (norms aside), since a non-null list replaces transformers'
// default skips (lm_head).
#include <set>

#include "core/error.h"
#include "export/bnb/bnb_layout.h"
#include "export/bnb/bnb_scheme.h"
#include "export/writer.h"
#include "formats/bnb4/bnb4.h"

namespace moeq {
namespace {

// BitsAndBytesConfig's bnb_4bit_compute_dtype: the model's dtype (transformers 5 writes
// `dtype`, older configs `torch_dtype`); float32, BitsAndBytesConfig's default, without one.
std::string compute_dtype(const nlohmann::json& config) {
  for (const char* key : {"dtype", "torch_dtype"}) {
    auto it = config.find(key);
    if (it != config.end() && it->is_string()) {
      const std::string d = it->get<std::string>();
      if (d == "bfloat16" || d == "float16" || d == "float32") return d;
    }
  }
  return "float32";
}

class BnbWriter : public ExportWriter {
 public:
  std::string name() const override { return "bnb"; }

  void check(const SitePlan& p) const override {
    const QuantFormat* f = find_format(p.format);
    if (!f || f->traits().kind != ElementKind::Codebook)  // bitsandbytes holds its codebook formats (nf4, fp4)
      throw Error("export bnb: site " + p.site->name + " uses " + p.format +
                  ", which bitsandbytes 4-bit checkpoints cannot hold (nf4 and fp4 only; use export: modelopt for "
                  "nvfp4/fp8, export: compressed-tensors for int4/int8/mxfp4)");
    if (p.site->role == Role::Embedding)
      throw Error("export bnb: site " + p.site->name + " is an embedding; bitsandbytes checkpoints quantize linears only");
    if (p.input_quant)
      throw Error("export bnb: site " + p.site->name + " quantizes activations; bitsandbytes 4-bit is weight-only");
  }

  uint64_t write(const QuantizedSite& s, TensorSink& out) const override {
    const std::string w = s.site->module + ".weight";
    uint64_t bytes = 0;
    auto put = [&](const std::string& name, const at::Tensor& t) {
      out.add(name, t);
      bytes += t.nbytes();
    };
    put(w, part_of(s, "weight"));
    for (const char* p : {bnb_scheme::kAbsmax, bnb_scheme::kQuantMap}) put(w + "." + p, part_of(s, p));
    if (s.q->params.double_quant)
      for (const char* p : {bnb_scheme::kNestedAbsmax, bnb_scheme::kNestedQuantMap}) put(w + "." + p, part_of(s, p));
    put(w + "." + bnb_scheme::quant_state_suffix(s.q->format), bnb4_quant_state_tensor(*s.q, std::max<int64_t>(0, s.index)));
    return bytes;
  }

  void finish(const std::string&, nlohmann::json& config, const Plan& plan, const Recipe&) const override {
    const SitePlan* first = nullptr;
    std::vector<std::string> quantized, kept;
    for (const auto& sp : plan.sites) {
      if (!sp.quantize) {
        if (sp.site->role != Role::Norm) kept.push_back(sp.site->module);
        continue;
      }
      // config.json holds one quant type and one double-quant flag (bitsandbytes itself
      // reads both per tensor, but transformers builds every Linear4bit from the config).
      if (first && (sp.format != first->format || sp.params.double_quant != first->params.double_quant))
        throw Error("export bnb: sites " + first->site->name + " (" + first->format + (first->params.double_quant ? ", double_quant" : "") +
                    ") and " + sp.site->name + " (" + sp.format + (sp.params.double_quant ? ", double_quant" : "") +
                    ") differ; a bitsandbytes checkpoint has one bnb_4bit_quant_type and bnb_4bit_use_double_quant");
      if (!first) first = &sp;
      quantized.push_back(sp.site->module);
    }
    if (!first) throw Error("export bnb: the recipe quantizes no site");
    // A plain name that would also skip a quantized module (transformers matches entries as
    // regex prefixes and suffixes) is written anchored.
    std::vector<std::string> skip;
    for (const auto& m : kept) {
      bool clash = false;
      for (const auto& q : quantized) clash = clash || bnb_scheme::skip_entry_matches(m, q);
      skip.push_back(clash ? bnb_scheme::anchored_skip_entry(m) : m);
    }
    config["quantization_config"] = {
        {"_load_in_4bit", true},
        {"_load_in_8bit", false},
        {"bnb_4bit_compute_dtype", compute_dtype(config)},
        {"bnb_4bit_quant_storage", "uint8"},
        {"bnb_4bit_quant_type", first->format},
        {"bnb_4bit_use_double_quant", first->params.double_quant},
        {"llm_int8_enable_fp32_cpu_offload", false},
        {"llm_int8_has_fp16_weight", false},
        {"llm_int8_skip_modules", skip},
        {"llm_int8_threshold", 6.0},
        {"load_in_4bit", true},
        {"load_in_8bit", false},
        {"quant_method", "bitsandbytes"}};
  }
};

}  // namespace

std::shared_ptr<const ExportWriter> make_bnb_writer() { return std::make_shared<BnbWriter>(); }

}  // namespace moeq
