// ModelOpt unified HF export (what vLLM, TensorRT-LLM and SGLang load as quant_method
// "modelopt"): per linear `weight`, `weight_scale`, `weight_scale_2` (NVFP4) and
// `input_scale`; experts one module per expert; hf_quant_config.json and
// config.json `quantization_config`; unquantized linears listed in exclude_modules.
#include <fstream>
#include <set>

#include "core/error.h"
#include "export/writer.h"
#include "io/text_file.h"

namespace moeq {
namespace {

std::string algo(const std::string& format) { return format == "nvfp4" ? "NVFP4" : "FP8"; }

class ModelOptWriter : public ExportWriter {
 public:
  std::string name() const override { return "modelopt"; }

  void check(const SitePlan& p) const override {
    if (p.format != "nvfp4" && p.format != "fp8")
      throw Error("export modelopt: site " + p.site->name + " uses " + p.format +
                  ", which ModelOpt checkpoints cannot hold (nvfp4 and fp8 only; use export: compressed-tensors "
                  "for int4/int8, export: bnb for nf4/fp4)");
    if (p.format == "fp8" && p.params.granularity != "tensor")
      throw Error("export modelopt: site " + p.site->name + ": per-channel fp8 is not a ModelOpt layout (use granularity: tensor)");
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
    put("weight_scale", part_of(s, "weight_scale").reshape(s.q->format == "fp8" ? std::vector<int64_t>{} : part_of(s, "weight_scale").sizes().vec()));
    if (s.q->format == "nvfp4") put("weight_scale_2", part_of(s, "weight_scale_2").reshape({}));
    if (s.input_scale) put("input_scale", at::full({}, *s.input_scale, at::kFloat));
    return bytes;
  }

  void finish(const std::string& dir, nlohmann::json& config, const Plan& plan, const Recipe& recipe) const override {
    std::set<std::string> formats;
    std::vector<std::string> exclude;
    nlohmann::ordered_json layers = nlohmann::ordered_json::object();
    bool input_quant = false;
    for (const auto& sp : plan.sites) {
      if (!sp.quantize) {
        exclude.push_back(sp.site->module);
        continue;
      }
      formats.insert(sp.format);
      input_quant = input_quant || sp.input_quant;
      layers[sp.site->module] = sp.format == "nvfp4" ? nlohmann::ordered_json{{"quant_algo", "NVFP4"}, {"group_size", 16}}
                                                     : nlohmann::ordered_json{{"quant_algo", "FP8"}};
    }
    const std::string quant_algo = formats.size() == 1 ? algo(*formats.begin()) : "MIXED_PRECISION";
    nlohmann::ordered_json q = {{"quant_algo", quant_algo}, {"kv_cache_quant_algo", nullptr}, {"exclude_modules", exclude}};
    if (quant_algo == "NVFP4") q["group_size"] = 16;
    if (quant_algo == "MIXED_PRECISION") q["quantized_layers"] = layers;
    nlohmann::ordered_json hf = {{"producer", {{"name", "moeq"}, {"version", "0.1.0"}, {"recipe", recipe.name}}},
                                 {"quantization", q}};
    write_text_file(dir + "/hf_quant_config.json", hf.dump(2) + "\n");

    nlohmann::json qc = {{"quant_method", "modelopt"}, {"quant_algo", quant_algo}, {"kv_cache_quant_algo", nullptr},
                         {"exclude_modules", exclude}, {"ignore", exclude}, {"producer", {{"name", "moeq"}, {"version", "0.1.0"}}}};
    if (quant_algo == "NVFP4") {
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

MOEQ_WRITER(ModelOptWriter);

}  // namespace moeq
