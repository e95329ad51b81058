// ModelOpt unified HF export (what vLLM, TensorRT-LLM and SGLang load as quant_method
// "modelopt"): per linear `weight`, `weight_scale`, `weight_scale_2` (NVFP4) and
// `input_scale`; experts one module per expert; hf_quant_config.json and
// config.json `quantization_config`; unquantized linears listed in exclude_modules.
#include <fstream>
#include <string>
#include <set>

#include "core/error.h"
#include "export/modelopt/modelopt_layout.h"
#include "export/modelopt/modelopt_formats.h"
#include "export/writer.h"
#include "io/text_file.h"

namespace moeq {
namespace {

// ModelOpt's quant_algo spellings (modelopt/torch/export/quant_utils.py), as vLLM 0.34 accepts them
// (vllm/model_executor/layers/quantization/modelopt.py LINEAR_ALGOS): NVFP4 is W4A4, W4A16_NVFP4
// weight-only; FP8 is W8A8 with static per-tensor input scales only.
std::string algo(const SitePlan& p) { return modelopt_nvfp4_layout(p.format) ? (p.input_quant ? "NVFP4" : "W4A16_NVFP4") : "FP8"; }

// exclude_modules as ModelOpt (>= 0.39) writes them (modelopt/torch/export/quant_utils.py
// _prefix_wildcard_summarize_exclude_modules): the largest module subtree that holds no quantized
// linear as one `PATH*` pattern, a lone unquantized linear by its name. vLLM (modelopt.py
// apply_vllm_mapper, is_layer_excluded) reads `PATH*` as PATH and PATH.*, so a fused qkv_proj whose
// checkpoint lacks a shard (Gemma-4 full-attention layers have no v_proj) is excluded as a whole
// instead of tripping quant_utils.py is_layer_skipped's "some but not all shards" check on the
// missing shard. Consumers also read PATH as a plain string prefix (vLLM's is_layer_excluded
// substring check, SGLang's glob `PATH.*` in modelopt_quant.py is_layer_excluded, TensorRT-LLM's
// fnmatch in QuantConfig.is_module_excluded_from_quantization): `model.layers.1*` would exclude
// model.layers.10-19 too. Where a quantized module's name starts with PATH, ModelOpt writes
// `PATH.*` instead, and so does this.
std::vector<std::string> exclude_patterns(const Plan& plan) {
  std::set<std::string> holds_quantized;  // every dotted ancestor of a quantized module
  std::set<std::string> quantized;
  for (const auto& sp : plan.sites)
    if (sp.quantize) {
      quantized.insert(sp.site->module);
      for (size_t dot = sp.site->module.find('.'); dot != std::string::npos; dot = sp.site->module.find('.', dot + 1))
        holds_quantized.insert(sp.site->module.substr(0, dot));
    }
  auto prefix_of_quantized = [&](const std::string& p) {
    auto it = quantized.lower_bound(p);
    return it != quantized.end() && it->compare(0, p.size(), p) == 0;
  };
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& sp : plan.sites) {
    if (sp.quantize) continue;
    const std::string& m = sp.site->module;
    std::string pick = m;
    for (size_t dot = m.find('.'); dot != std::string::npos; dot = m.find('.', dot + 1))
      if (!holds_quantized.count(m.substr(0, dot))) {
        const std::string p = m.substr(0, dot);
        pick = prefix_of_quantized(p) ? p + ".*" : p + "*";
        break;
      }
    if (seen.insert(pick).second) out.push_back(pick);
  }
  return out;
}

class ModelOptWriter : public ExportWriter {
 public:
  std::string name() const override { return "modelopt"; }

  void check(const SitePlan& p) const override {
    const bool fp8 = modelopt_fp8_layout(p.format);
    if (!modelopt_nvfp4_layout(p.format) && !fp8)
      throw Error("export modelopt: site " + p.site->name + " uses " + p.format +
                  ", which ModelOpt checkpoints cannot hold (nvfp4 and fp8 only; use export: compressed-tensors "
                  "for int4/int8, export: bnb for nf4/fp4)");
    if (fp8 && p.params.granularity != "tensor")
      throw Error("export modelopt: site " + p.site->name + ": per-channel fp8 is not a ModelOpt layout (use granularity: tensor)");
    // vLLM's ModelOpt FP8 (modelopt.py ModelOptFp8MoEMethod.create_weights, resolve("FP8")) is static
    // W8A8 only: without input scales it runs with its placeholders (1.0), i.e. wrong numbers.
    if (fp8 && !p.input_quant)
      throw Error("export modelopt: site " + p.site->name + ": fp8 weight-only has no ModelOpt layout (vLLM reads ModelOpt FP8 "
                  "as W8A8 with static input scales); use export: compressed-tensors for FP8 weight-only, or quantize "
                  "activations (input_quant: true, quantize --calib)");
  }

  bool lays_out_before_quantizing() const override { return true; }

  uint64_t write(const QuantizedSite& s, TensorSink& out) const override {
    const std::string m = s.site->module;
    uint64_t bytes = 0;
    auto put = [&](const std::string& suffix, const at::Tensor& t) {
      out.add(m + "." + suffix, t);
      bytes += t.nbytes();
    };
    put("weight", part_of(s, "weight"));
    put("weight_scale", part_of(s, "weight_scale").reshape(modelopt_fp8_layout(s.q->format) ? std::vector<int64_t>{} : part_of(s, "weight_scale").sizes().vec()));
    if (modelopt_nvfp4_layout(s.q->format)) put("weight_scale_2", part_of(s, "weight_scale_2").reshape({}));
    if (s.input_scale) put("input_scale", at::full({}, *s.input_scale, at::kFloat));
    return bytes;
  }

  void finish(const std::string& dir, nlohmann::json& config, const Plan& plan, const Recipe& recipe) const override {
    std::set<std::string> algos;
    std::vector<std::string> exclude;
    nlohmann::ordered_json layers = nlohmann::ordered_json::object();
    bool input_quant = false;
    for (const auto& sp : plan.sites) {
      if (!sp.quantize) continue;
      algos.insert(algo(sp));
      input_quant = input_quant || sp.input_quant;
      layers[sp.site->module] = modelopt_nvfp4_layout(sp.format) ? nlohmann::ordered_json{{"quant_algo", algo(sp)}, {"group_size", 16}}
                                                     : nlohmann::ordered_json{{"quant_algo", "FP8"}};
    }
    exclude = exclude_patterns(plan);
    const std::string quant_algo = algos.size() == 1 ? *algos.begin() : "MIXED_PRECISION";
    const bool nvfp4 = quant_algo == "NVFP4" || quant_algo == "W4A16_NVFP4";
    nlohmann::ordered_json q = {{"quant_algo", quant_algo}, {"kv_cache_quant_algo", nullptr}, {"exclude_modules", exclude}};
    if (nvfp4) q["group_size"] = 16;
    if (quant_algo == "MIXED_PRECISION") q["quantized_layers"] = layers;
    nlohmann::ordered_json hf = {{"producer", {{"name", "moeq"}, {"version", "0.1.0"}, {"recipe", recipe.name}}},
                                 {"quantization", q}};
    write_text_file(dir + "/hf_quant_config.json", hf.dump(2) + "\n");

    nlohmann::json qc = {{"quant_method", "modelopt"}, {"quant_algo", quant_algo}, {"kv_cache_quant_algo", nullptr},
                         {"exclude_modules", exclude}, {"ignore", exclude}, {"producer", {{"name", "moeq"}, {"version", "0.1.0"}}}};
    if (nvfp4) {  // config_groups as ModelOpt's convert_hf_config writes them: W4A16 has no input_activations
      qc["group_size"] = 16;
      nlohmann::json weights = {{"num_bits", 4}, {"type", "float"}, {"group_size", 16}, {"dynamic", false}};
      nlohmann::json group = {{"targets", {"Linear"}}, {"weights", weights}};
      if (input_quant) group["input_activations"] = {{"num_bits", 4}, {"type", "float"}, {"group_size", 16}, {"dynamic", false}};
      qc["config_groups"] = {{"group_0", group}};
    }
    if (quant_algo == "MIXED_PRECISION") qc["quantized_layers"] = layers;
    config["quantization_config"] = qc;
  }
};

}  // namespace

std::shared_ptr<const ExportWriter> make_modelopt_writer() { return std::make_shared<ModelOptWriter>(); }

}  // namespace moeq
