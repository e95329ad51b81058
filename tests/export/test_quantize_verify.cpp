// quantize -> export -> verify on real checkpoints, and verify catching broken exports.
#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "export/verify.h"
#include "tensor/aten_view.h"
#include "io/checkpoint.h"
#include "io/safetensors_writer.h"
#include "model/demo_checkpoint.h"
#include "app/run/quantize.h"
#include "export/export_test_util.h"
#include "test_util.h"
#include "tiny_families.h"

using namespace moeq;
namespace fs = std::filesystem;

namespace {

std::string recipes_dir() { return std::string(MOEQ_SOURCE_DIR) + "/recipes"; }


std::string hash_dir(const std::string& dir) {
  std::string all;
  for (const auto& e : fs::directory_iterator(dir)) all += e.path().filename().string() + test::read_file(e.path());
  return std::to_string(std::hash<std::string>{}(all));
}

}  // namespace

TEST_CASE("quantize + verify: fp8 experts on the demo checkpoint, both layouts") {
  test::TempDir tmp;
  DemoShape shape;
  shape.layers = 2;
  shape.experts = 4;
  for (bool fused : {false, true}) {
    const std::string src = tmp.path + (fused ? "/fused" : "/flat");
    write_demo_checkpoint(src, fused, shape, 3, false);
    const std::string before = hash_dir(src);
    QuantizeOptions o;
    o.model = src;
    o.recipe = recipes_dir() + "/fp8_experts_weight_only.yaml";
    o.out = src + "-fp8";
    quantize_checkpoint(o);
    CHECK(hash_dir(src) == before);  // the source is never touched
    VerifyResult r = verify_export(o.out, src);
    for (const auto& p : r.problems) UNSCOPED_INFO(p);
    CHECK(r.problems.empty());
    CHECK(r.experts_expected == 2 * 4 * 3);
    CHECK(r.experts_quantized == 2 * 4 * 3);
    const auto rep = nlohmann::json::parse(test::read_file(o.out + "/report.json"));
    CHECK(rep["coverage"] == "experts quantized: 24 / 24");
    CHECK(rep["roles"]["attention"]["quantized"] == 0);
    CHECK(rep["export_bytes"].get<double>() < rep["source_bytes"].get<double>());
    // Gate and up of each expert share one weight_scale (max of their amax).
    auto ck = Checkpoint::open(o.out);
    for (int e = 0; e < 4; ++e) {
      const std::string p = "model.layers.1.mlp.experts." + std::to_string(e) + ".";
      CHECK(at::equal(tensor_view(*ck, p + "gate_proj.weight_scale"), tensor_view(*ck, p + "up_proj.weight_scale")));
    }
  }
}

TEST_CASE("verify: a deleted expert scale and a gate/up scale mismatch fail with the expert named") {
  test::TempDir tmp;
  DemoShape shape;
  shape.layers = 1;
  shape.experts = 3;
  write_demo_checkpoint(tmp.path + "/m", true, shape, 5, false);
  QuantizeOptions o;
  o.model = tmp.path + "/m";
  o.recipe = recipes_dir() + "/nvfp4_experts_only.yaml";
  o.weight_only = true;
  o.out = tmp.path + "/q";
  quantize_checkpoint(o);
  REQUIRE(verify_export(o.out, o.model).problems.empty());
  test::rewrite_export(o.out, [](const std::string& n, at::Tensor& t) {
    if (n == "model.layers.0.mlp.experts.1.down_proj.weight_scale") return false;
    if (n == "model.layers.0.mlp.experts.2.up_proj.weight_scale_2") t.mul_(2);
    return true;
  });
  VerifyResult r = verify_export(o.out, o.model);
  REQUIRE(r.problems.size() >= 2);
  std::string all;
  for (const auto& p : r.problems) all += p + "\n";
  INFO(all);
  CHECK_THAT(all, Catch::Matchers::ContainsSubstring("model.layers.0.mlp.experts.1.down_proj"));
  CHECK_THAT(all, Catch::Matchers::ContainsSubstring("experts.2.gate_proj / model.layers.0.mlp.experts.2.up_proj: gate and up carry different"));
}

TEST_CASE("quantize: refuses silent expert skips and unsupported exports; failures leave nothing behind") {
  test::TempDir tmp;
  DemoShape shape;
  shape.layers = 1;
  shape.experts = 2;
  write_demo_checkpoint(tmp.path + "/m", false, shape, 5, false);
  auto write_recipe = [&](const std::string& text) {
    test::write_file(tmp.path + "/r.yaml", text);
    return tmp.path + "/r.yaml";
  };
  QuantizeOptions o;
  o.model = tmp.path + "/m";
  o.out = tmp.path + "/q";
  o.recipe = write_recipe("weight_only: true\nrules:\n  - roles: [attention]\n    format: fp8\n");
  REQUIRE_ERROR_MENTIONS(quantize_checkpoint(o), "expert sites match no rule", "layers.0.experts.0.gate");
  o.recipe = write_recipe("rules:\n  - roles: [experts]\n    format: fp8\n    input_quant: true\n");
  REQUIRE_ERROR_MENTIONS(quantize_checkpoint(o), "input_quant", "--calib");
  o.recipe = write_recipe("weight_only: true\nrules:\n  - roles: [experts]\n    format: fp8\n    params: {granularity: channel}\n");
  REQUIRE_ERROR_MENTIONS(quantize_checkpoint(o), "per-channel fp8 is not a ModelOpt layout");
  // The recipe parser keeps `export:` as data; the layout registry refuses it, naming file and line.
  o.recipe = write_recipe("weight_only: true\nexport: gguf\nrules:\n  - roles: [experts]\n    format: fp8\n");
  REQUIRE_ERROR_MENTIONS(quantize_checkpoint(o), "r.yaml:2", "unknown export 'gguf'", "bnb, compressed-tensors, modelopt");
  CHECK_FALSE(fs::exists(o.out));
  for (const auto& e : fs::directory_iterator(tmp.path)) CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);
}

TEST_CASE("quantize + verify: shipped recipes (ModelOpt and compressed-tensors exports) on every family's tiny transformers checkpoint", "[tiny]") {
  const std::string root = test::tiny_dir();
  test::TempDir tmp;
  for (const std::string& fam : test::tiny_families()) {
    for (const char* recipe : {"nvfp4_experts_only", "nvfp4_mlp_only", "nvfp4_all", "fp8", "mxfp4_experts", "fp8_experts_weight_only",
                               "nvfp4_experts_only_mse"}) {
      DYNAMIC_SECTION(fam << " " << recipe) {
        const std::string src = root + "/" + fam + "/model";
        QuantizeOptions o;
        o.model = src;
        o.recipe = recipes_dir() + "/" + recipe + ".yaml";
        o.out = tmp.path + "/" + fam + "-" + recipe;
        o.weight_only = true;  // no calibration yet: weight-only exports
        if (std::string(recipe) == "fp8") {  // ModelOpt FP8 is W8A8 only (vLLM): weight-only is refused
          REQUIRE_ERROR_MENTIONS(quantize_checkpoint(o), "fp8 weight-only has no ModelOpt layout");
          continue;
        }
        if (std::string(fam) == "gpt_oss") {  // vLLM reads gpt-oss experts fused and interleaved only
          REQUIRE_ERROR_MENTIONS(quantize_checkpoint(o), "gpt-oss experts written per expert do not load in vLLM");
          continue;
        }
        quantize_checkpoint(o);
        VerifyResult r = verify_export(o.out, src);
        for (const auto& p : r.problems) UNSCOPED_INFO(p);
        CHECK(r.problems.empty());
        CHECK(r.experts_expected > 0);
        CHECK(r.experts_quantized == r.experts_expected);
        const auto rep = nlohmann::json::parse(test::read_file(o.out + "/report.json"));
        CHECK(rep["experts"]["quantized"] == rep["experts"]["total"]);
        CHECK(rep["size_ratio"].get<double>() > 1.0);
      }
    }
  }
}

TEST_CASE("quantize: NVFP4 experts of a fused Gemma4-layout checkpoint: every expert, shared gate/up scales", "[tiny]") {
  const std::string src = test::tiny_dir() + "/gemma4/model";
  test::TempDir tmp;
  QuantizeOptions o;
  o.model = src;
  o.recipe = recipes_dir() + "/nvfp4_experts_only.yaml";
  o.out = tmp.path + "/g4";
  o.weight_only = true;
  quantize_checkpoint(o);
  const auto rep = nlohmann::json::parse(test::read_file(o.out + "/report.json"));
  CHECK(rep["coverage"] == "experts quantized: 48 / 48");
  CHECK(rep["roles"]["dense_mlp"]["quantized"] == 0);
  auto ck = Checkpoint::open(o.out);
  for (int l = 0; l < 2; ++l)
    for (int e = 0; e < 8; ++e) {
      const std::string p = "model.layers." + std::to_string(l) + ".experts." + std::to_string(e) + ".";
      REQUIRE(ck->has(p + "gate_proj.weight_scale_2"));
      CHECK(at::equal(tensor_view(*ck, p + "gate_proj.weight_scale_2"), tensor_view(*ck, p + "up_proj.weight_scale_2")));
      CHECK(ck->info(p + "down_proj.weight").dtype == DType::U8);
    }
  CHECK_FALSE(ck->has("model.layers.0.experts.gate_up_proj"));  // the fused stack is exported per expert
}
