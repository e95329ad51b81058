// What vLLM's loaders need from a ModelOpt / compressed-tensors export (issue 15 items 1-4;
// export/fused_consumer_rules.h): fusion groups share scales and are quantized as a whole,
// MoE layers are quantized as a whole, weight-only NVFP4 is W4A16_NVFP4, ModelOpt FP8 is W8A8.
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "export/compressed_tensors/ct_scheme.h"
#include "export/export_test_util.h"
#include "export/verify.h"
#include "tensor/aten_view.h"
#include "io/checkpoint.h"
#include "test_util.h"

using namespace moeq;

namespace {

constexpr const char* kNvfp4All = "  - sites: \"*\"\n    format: nvfp4\n";
constexpr const char* kNvfp4Experts =
    "  - roles: [experts]\n    format: nvfp4\n  - roles: [attention, dense_mlp, shared_experts, other]\n    enable: false\n";

float scalar(const Checkpoint& ck, const std::string& n) { return tensor_view(ck, n).to(at::kFloat).item<float>(); }

}  // namespace

TEST_CASE("fusion groups: q/k/v share one NVFP4 weight_scale_2 in ModelOpt and one global scale in compressed-tensors") {
  test::TempDir tmp;
  for (const char* exp : {"modelopt", "compressed-tensors"}) {
    const std::string out = test::quantize_demo_export(tmp, false, exp, kNvfp4All, exp);
    REQUIRE(verify_export(out, tmp.path + "/flat").problems.empty());
    auto ck = Checkpoint::open(out);
    const std::string suffix = std::string(exp) == "modelopt" ? ".weight_scale_2" : ".weight_global_scale";
    for (int layer = 0; layer < 2; ++layer) {
      const std::string a = "model.layers." + std::to_string(layer) + ".self_attn.";
      const float q = scalar(*ck, a + "q_proj" + suffix);
      INFO(exp << " layer " << layer);
      CHECK(scalar(*ck, a + "k_proj" + suffix) == q);
      CHECK(scalar(*ck, a + "v_proj" + suffix) == q);
      CHECK(scalar(*ck, a + "o_proj" + suffix) != q);  // o_proj is no member: its own scale
    }
  }
}

TEST_CASE("fusion groups: a recipe that splits q/k/v is refused for ModelOpt and compressed-tensors, not for bnb") {
  test::TempDir tmp;
  const std::string rules = std::string(kNvfp4Experts) + "  - sites: [\"layers.*.attn.q\", \"layers.*.attn.k\"]\n    format: nvfp4\n";
  for (const char* exp : {"modelopt", "compressed-tensors"})
    REQUIRE_ERROR_MENTIONS(test::quantize_demo_export(tmp, false, exp, rules, exp), "r.yaml", "fusion group layers.0.attn.{q,k,v} is split",
                           "layers.0.attn.v is not quantized");
  const std::string nf4 = "  - roles: [experts]\n    format: nf4\n  - roles: [attention, dense_mlp, shared_experts, other]\n    "
                          "enable: false\n  - sites: [\"layers.*.attn.q\", \"layers.*.attn.k\"]\n    format: nf4\n";
  CHECK_NOTHROW(test::quantize_demo_export(tmp, false, "bnb", nf4, "bnb"));
}

TEST_CASE("MoE layers: some experts of a layer excluded is refused for ModelOpt and compressed-tensors") {
  test::TempDir tmp;
  const std::string rules = std::string(kNvfp4Experts) + "  - sites: \"layers.1.experts.2.*\"\n    enable: false\n";
  for (const char* exp : {"modelopt", "compressed-tensors"})
    REQUIRE_ERROR_MENTIONS(test::quantize_demo_export(tmp, true, exp, rules, exp), "layer 1's routed experts are not quantized alike",
                           "layers.1.experts.2.gate is not quantized");
  // down in another format than gate/up: compressed-tensors' MoE reads one scheme for all three
  const std::string mixed = std::string(kNvfp4Experts) + "  - sites: \"*experts*down\"\n    format: mxfp4\n";
  REQUIRE_ERROR_MENTIONS(test::quantize_demo_export(tmp, true, "compressed-tensors", mixed, "ct-mixed"), "layer 0's routed experts");
  // a whole layer's experts excluded is fine
  const std::string whole = std::string(kNvfp4Experts) + "  - sites: \"layers.1.experts.*\"\n    enable: false\n";
  CHECK_NOTHROW(test::quantize_demo_export(tmp, true, "modelopt", whole, "whole"));
}

TEST_CASE("ModelOpt: weight-only NVFP4 is quant_algo W4A16_NVFP4, FP8 weight-only is refused naming the recipe") {
  test::TempDir tmp;
  const std::string out = test::quantize_demo_export(tmp, false, "modelopt", kNvfp4Experts, "w4a16");
  const auto hf = nlohmann::json::parse(test::read_file(out + "/hf_quant_config.json"));
  CHECK(hf["quantization"]["quant_algo"] == "W4A16_NVFP4");
  CHECK(hf["quantization"]["group_size"] == 16);
  const auto qc = nlohmann::json::parse(test::read_file(out + "/config.json"))["quantization_config"];
  CHECK(qc["quant_algo"] == "W4A16_NVFP4");
  CHECK_FALSE(qc["config_groups"]["group_0"].contains("input_activations"));
  CHECK(verify_export(out, tmp.path + "/flat").problems.empty());
  const std::string fp8 = "  - roles: [experts]\n    format: fp8\n  - roles: [attention, dense_mlp, shared_experts, other]\n    enable: false\n";
  REQUIRE_ERROR_MENTIONS(test::quantize_demo_export(tmp, false, "modelopt", fp8, "fp8"), "r.yaml", "fp8 weight-only has no ModelOpt layout",
                         "export: compressed-tensors");
  CHECK_NOTHROW(test::quantize_demo_export(tmp, false, "compressed-tensors", fp8, "fp8-ct"));
}

TEST_CASE("ModelOpt: exclude_modules are ModelOpt's subtree patterns, so a fused group missing a shard is excluded whole") {
  test::TempDir tmp;
  const std::string out = test::quantize_demo_export(tmp, true, "modelopt", kNvfp4Experts, "patterns");
  const auto hf = nlohmann::json::parse(test::read_file(out + "/hf_quant_config.json"));
  std::set<std::string> ex;
  for (const auto& e : hf["quantization"]["exclude_modules"]) ex.insert(e.get<std::string>());
  // attention unquantized: one pattern per layer's self_attn (vLLM reads it as the module and
  // everything under it, whichever shards the checkpoint has); routers and lm_head by name
  CHECK(ex == std::set<std::string>{"model.layers.0.self_attn*", "model.layers.1.self_attn*", "model.layers.0.mlp.gate",
                                    "model.layers.1.mlp.gate", "model.embed_tokens", "lm_head"});
  const auto qc = nlohmann::json::parse(test::read_file(out + "/config.json"))["quantization_config"];
  CHECK(qc["exclude_modules"] == hf["quantization"]["exclude_modules"]);
  CHECK(verify_export(out, tmp.path + "/fused").problems.empty());  // verify reads the patterns too
}

TEST_CASE("ModelOpt: a subtree pattern never covers a quantized module by string prefix (model.layers.1* vs layer 10)") {
  // vLLM (modelopt.py is_layer_excluded: substring test after apply_vllm_mapper), SGLang
  // (modelopt_quant.py is_layer_excluded: glob `*` -> `.*`) and TensorRT-LLM (fnmatch) read
  // `model.layers.1*` as every name starting with "model.layers.1", layers 10-19 included.
  test::TempDir tmp;
  DemoShape shape;
  shape.layers = 12;
  shape.experts = 4;
  shape.hidden = 64;
  shape.expert_inter = 32;
  shape.vocab = 64;
  shape.head_dim = 16;
  const std::string src = tmp.path + "/deep";
  write_demo_checkpoint(src, true, shape, 7, false);
  test::write_file(tmp.path + "/r.yaml", std::string("export: modelopt\nweight_only: true\nrules:\n") + kNvfp4Experts +
                                             "  - sites: \"layers.1.*\"\n    enable: false\n");
  QuantizeOptions o;
  o.model = src;
  o.recipe = tmp.path + "/r.yaml";
  o.out = src + "-modelopt";
  quantize_checkpoint(o);
  const auto hf = nlohmann::json::parse(test::read_file(o.out + "/hf_quant_config.json"));
  std::set<std::string> ex;
  for (const auto& e : hf["quantization"]["exclude_modules"]) ex.insert(e.get<std::string>());
  CHECK(ex.count("model.layers.1.*"));  // ModelOpt's form where `PATH*` would reach further
  CHECK_FALSE(ex.count("model.layers.1*"));
  CHECK(ex.count("model.layers.2.self_attn*"));  // no collision: ModelOpt's `PATH*`
  for (const auto& e : ex) {
    if (e.size() > 2 && e.compare(e.size() - 2, 2, ".*") == 0) continue;  // a literal dot ends the stem
    const std::string stem = e.back() == '*' ? e.substr(0, e.size() - 1) : e;
    for (const char* q : {"model.layers.10.mlp.experts.0.gate_proj", "model.layers.11.mlp.experts.3.down_proj"})
      CHECK_FALSE(std::string(q).rfind(stem, 0) == 0);
  }
  CHECK(verify_export(o.out, src).problems.empty());  // moeq's reader reads `PATH.*` too
}

TEST_CASE("compressed-tensors: regex targets of a multimodal checkpoint match the names vLLM gives its modules") {
  const std::string t = ct_module_regex("model.language_model.layers.3.mlp.experts.17.gate_proj");
  REQUIRE(t.rfind("re:", 0) == 0);
  const std::regex re(t.substr(3));
  CHECK(std::regex_match("model.language_model.layers.0.mlp.experts.1.gate_proj", re));  // the checkpoint, transformers
  CHECK(std::regex_match("language_model.model.layers.0.mlp.experts.1.gate_proj", re));  // vLLM after hf_to_vllm_mapper
  CHECK_FALSE(std::regex_match("model.vision_tower.layers.0.mlp.experts.1.gate_proj", re));
  CHECK_FALSE(std::regex_match("language_model.model.layers.0.mlp.experts.1.up_proj", re));
  CHECK(ct_module_regex("model.layers.3.self_attn.q_proj") == "re:model\\.layers\\.\\d+\\.self_attn\\.q_proj$");
}
