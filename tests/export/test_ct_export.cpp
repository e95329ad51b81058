// compressed-tensors export: quantize -> export -> moeq verify, verify catching broken
// exports, the writer's refusals and its activation-scale tensors. (compressed-tensors
// itself reads these exports in tests/python/consumer_ct_export.py.)
#include <ATen/ATen.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "export/export_test_util.h"
#include "export/layout.h"
#include "export/shard_writer.h"
#include "export/verify.h"
#include "app/run/quantize.h"
#include "export/export_test_util.h"
#include "export/writer.h"
#include "io/checkpoint.h"
#include "io/safetensors_writer.h"
#include "model/demo_checkpoint.h"
#include "tensor/aten_view.h"
#include "test_util.h"

using namespace moeq;
namespace fs = std::filesystem;

namespace {

// Demo checkpoint (both layouts) quantized with the recipe text; returns the export dir.
std::string quantize_demo(const test::TempDir& tmp, bool fused, const std::string& recipe_text, int64_t experts = 4) {
  return test::quantize_demo_export(tmp, fused, "compressed-tensors", recipe_text, "ct", experts);
}

nlohmann::json quant_config(const std::string& dir) {
  return nlohmann::json::parse(test::read_file(dir + "/config.json"))["quantization_config"];
}

std::string all_problems(const VerifyResult& r) {
  std::string all;
  for (const auto& p : r.problems) all += p + "\n";
  return all;
}


const char* kExpertsMxfp4Layer0Int4 =
    "  - roles: [experts]\n    format: mxfp4\n"
    "  - sites: \"layers.0.experts.*\"\n    format: int4\n    params: {group_size: 64, symmetric: false}\n"
    "  - roles: [attention]\n    format: int8\n";

}  // namespace

TEST_CASE("compressed-tensors export: mixed formats verify clean against the source, both expert layouts") {
  test::TempDir tmp;
  for (bool fused : {false, true}) {
    const std::string out = quantize_demo(tmp, fused, kExpertsMxfp4Layer0Int4);
    const std::string src = tmp.path + (fused ? "/fused" : "/flat");
    VerifyResult r = verify_export(out, src);
    INFO(all_problems(r));
    CHECK(r.problems.empty());
    CHECK(r.layout == "compressed-tensors");
    CHECK(r.experts_expected == 2 * 4 * 3);
    CHECK(r.experts_quantized == 2 * 4 * 3);
    size_t int4 = 0, mxfp4 = 0, int8 = 0;
    for (const auto& s : r.sites) {
      int4 += s.format == "int4";
      mxfp4 += s.format == "mxfp4";
      int8 += s.format == "int8";
      if (!s.format.empty()) CHECK(s.compared);
    }
    CHECK(int4 == 4 * 3);   // layer 0 experts
    CHECK(mxfp4 == 4 * 3);  // layer 1 experts
    CHECK(int8 == 2 * 4);   // q/k/v/o of both layers

    const auto qc = quant_config(out);
    CHECK(qc["quant_method"] == "compressed-tensors");
    CHECK(qc["format"] == "mixed-precision");
    CHECK(qc["quantization_status"] == "compressed");
    REQUIRE(qc["config_groups"].size() == 3);
    // Layer 0 and 1 experts share a module shape but not a format: exact names, no regex.
    std::set<std::string> targets;
    for (const auto& [name, g] : qc["config_groups"].items())
      for (const auto& t : g["targets"]) targets.insert(t.get<std::string>());
    CHECK(targets.count("model.layers.0.mlp.experts.3.down_proj"));
    CHECK(targets.count("model.layers.1.mlp.experts.0.gate_proj"));
    CHECK(targets.count(R"(re:model\.layers\.\d+\.self_attn\.q_proj$)"));
    const std::set<std::string> ignore = qc["ignore"].get<std::set<std::string>>();
    CHECK(ignore == std::set<std::string>{"model.embed_tokens", "lm_head", "model.layers.0.mlp.gate", "model.layers.1.mlp.gate"});
  }
}

TEST_CASE("compressed-tensors export: tensors per format as compressed-tensors names and types them") {
  test::TempDir tmp;
  const std::string out = quantize_demo(tmp, false,
                                        "  - roles: [experts]\n    format: nvfp4\n"
                                        "  - roles: [attention]\n    format: fp8\n    params: {granularity: channel}\n");
  auto ck = Checkpoint::open(out);
  const std::string e = "model.layers.1.mlp.experts.2.gate_proj.";
  CHECK(ck->info(e + "weight_packed").dtype == DType::U8);
  CHECK(ck->info(e + "weight_packed").shape == std::vector<int64_t>{128, 128});
  CHECK(ck->info(e + "weight_scale").dtype == DType::F8_E4M3);
  CHECK(ck->info(e + "weight_scale").shape == std::vector<int64_t>{128, 16});
  CHECK(ck->info(e + "weight_global_scale").shape == std::vector<int64_t>{1});
  CHECK_FALSE(ck->has(e + "weight"));
  const std::string q = "model.layers.0.self_attn.q_proj.";
  CHECK(ck->info(q + "weight").dtype == DType::F8_E4M3);
  CHECK(ck->info(q + "weight_scale").dtype == DType::F32);
  CHECK(ck->info(q + "weight_scale").shape == std::vector<int64_t>{256, 1});
  const auto groups = quant_config(out)["config_groups"];
  std::set<std::string> formats;
  for (const auto& [n, g] : groups.items()) formats.insert(g["format"].get<std::string>());
  // fp8 weight-only is what compressed-tensors infers as naive-quantized.
  CHECK(formats == std::set<std::string>{"nvfp4-pack-quantized", "naive-quantized"});
}

TEST_CASE("verify: a deleted expert scale and a gate/up global-scale mismatch in a compressed-tensors export fail naming the expert") {
  test::TempDir tmp;
  const std::string out = quantize_demo(tmp, false, "  - roles: [experts]\n    format: nvfp4\n");
  const std::string src = tmp.path + "/flat";
  REQUIRE(verify_export(out, src).problems.empty());
  test::rewrite_export(out, [](const std::string& n, at::Tensor& t) {
    if (n == "model.layers.0.mlp.experts.1.down_proj.weight_scale") return false;
    if (n == "model.layers.1.mlp.experts.2.up_proj.weight_global_scale") t.mul_(2);
    return true;
  });
  VerifyResult r = verify_export(out, src);
  const std::string all = all_problems(r);
  INFO(all);
  REQUIRE(r.problems.size() == 3);  // the doubled global scale also halves the decoded up_proj
  CHECK_THAT(all, Catch::Matchers::ContainsSubstring("layers.0.experts.1.down (model.layers.0.mlp.experts.1.down_proj): missing weight_scale"));
  CHECK_THAT(all, Catch::Matchers::ContainsSubstring("layers.1.experts.2.up (model.layers.1.mlp.experts.2.up_proj): SQNR"));
  CHECK_THAT(all, Catch::Matchers::ContainsSubstring(
                      "model.layers.1.mlp.experts.2.gate_proj / model.layers.1.mlp.experts.2.up_proj: gate and up carry different weight_global_scale"));
  CHECK(r.experts_quantized == 2 * 4 * 3 - 1);
}

TEST_CASE("verify: a compressed-tensors export with a weight that decodes wrong or an orphan scale fails") {
  test::TempDir tmp;
  const std::string out = quantize_demo(tmp, false, "  - roles: [experts]\n    format: int4\n    params: {symmetric: false}\n");
  const std::string src = tmp.path + "/flat";
  test::rewrite_export(out, [](const std::string& n, at::Tensor& t) {
    if (n == "model.layers.1.mlp.experts.3.up_proj.weight_zero_point") t.fill_(0);  // wrong zero points
    if (n == "model.layers.0.mlp.experts.0.gate_proj.weight_packed") return false;   // scale left behind
    return true;
  });
  VerifyResult r = verify_export(out, src);
  const std::string all = all_problems(r);
  INFO(all);
  CHECK_THAT(all, Catch::Matchers::ContainsSubstring("layers.1.experts.3.up (model.layers.1.mlp.experts.3.up_proj): SQNR"));
  CHECK_THAT(all, Catch::Matchers::ContainsSubstring("'model.layers.0.mlp.experts.0.gate_proj.weight_scale' is a quantization parameter with no quantized weight"));
  CHECK_THAT(all, Catch::Matchers::ContainsSubstring("layer 0: 1 expert weights missing (first: expert 0.gate)"));
}

TEST_CASE("compressed-tensors export: refuses formats and activation schemes it cannot write") {
  test::TempDir tmp;
  const ExportWriter& w = *export_layout("compressed-tensors").writer;
  Site site;
  site.name = "layers.0.experts.0.gate";
  site.role = Role::Expert;
  SitePlan p;
  p.site = &site;
  p.quantize = true;
  p.format = "nf4";
  REQUIRE_ERROR_MENTIONS(w.check(p), "export compressed-tensors", "layers.0.experts.0.gate", "nf4", "export: bnb");
  site.role = Role::Embedding;
  p.format = "int8";
  REQUIRE_ERROR_MENTIONS(w.check(p), "is an embedding");
  site.role = Role::Expert;
  quantize_demo(tmp, false, "  - roles: [experts]\n    format: int8\n");  // writes the source checkpoint
  test::write_file(tmp.path + "/r2.yaml",
                   "export: compressed-tensors\nrules:\n  - roles: [experts]\n    format: int4\n    input_quant: true\n");
  QuantizeOptions o;
  o.model = tmp.path + "/flat";
  o.recipe = tmp.path + "/r2.yaml";
  o.out = tmp.path + "/q2";
  REQUIRE_ERROR_MENTIONS(quantize_checkpoint(o), "export compressed-tensors", "int4 weight-only (W4A16)");
  CHECK_FALSE(fs::exists(o.out));
}

TEST_CASE("compressed-tensors writer: activation scales of W4A4 nvfp4 and W8A8 fp8 experts") {
  // The pipeline has no calibration yet, so write a calibrated site directly.
  test::TempDir tmp;
  const ExportWriter& w = *export_layout("compressed-tensors").writer;
  const at::Tensor x = at::randn({2, 32, 64}, at::TensorOptions().dtype(at::kBFloat16));
  Site site;
  site.module = "model.layers.0.mlp.experts.1.down_proj";
  ShardWriter sw(tmp.path, ~0ull);
  const QuantizedTensor nv = format_by_name("nvfp4").quantize(x, FormatParams{});
  w.write(QuantizedSite{&site, &nv, 1, 0.375f}, sw);
  Site site2 = site;
  site2.module = "model.layers.0.mlp.experts.1.up_proj";
  const QuantizedTensor f8 = format_by_name("fp8").quantize(x, FormatParams{});
  w.write(QuantizedSite{&site2, &f8, 0, 0.25f}, sw);
  sw.finish();
  auto ck = Checkpoint::open(tmp.path);
  const float ws2 = nv.parts.at("weight_scale_2")[1].item<float>();
  CHECK(tensor_view(*ck, site.module + ".weight_global_scale").item<float>() == 1.0f / ws2);
  CHECK(tensor_view(*ck, site.module + ".input_global_scale").item<float>() == 1.0f / 0.375f);
  CHECK(ck->info(site.module + ".input_global_scale").shape == std::vector<int64_t>{1});
  CHECK(at::equal(tensor_view(*ck, site.module + ".weight_packed"), nv.parts.at("weight")[1]));
  CHECK(tensor_view(*ck, site2.module + ".input_scale").item<float>() == 0.25f);
  CHECK(tensor_view(*ck, site2.module + ".weight_scale").item<float>() == f8.parts.at("weight_scale")[0].item<float>());
  CHECK(ck->info(site2.module + ".weight_scale").shape == std::vector<int64_t>{1});
}
