// quantize --calib: W4A4 / W8A8 exports carry a finite, non-zero input scale for every
// quantized linear, equal to the calibration amax through ModelOpt's (or
// compressed-tensors') export math, shared by gate and up; the report has a calibration
// section; `moeq verify` passes. Statistics come from a stand-in forward
// (tests/calib/fake_forward.h) through the real observer and calib.h5.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "calib/calibrate.h"
#include "calib/fake_forward.h"
#include "export/verify.h"
#include "tensor/aten_view.h"
#include "model/demo_checkpoint.h"
#include "calib/calibrators/input_scales.h"
#include "app/run/quantize.h"
#include "test_util.h"
#include "tiny_families.h"

using namespace moeq;

namespace {

std::string recipes_dir() { return std::string(MOEQ_SOURCE_DIR) + "/recipes"; }

// Calibrates `model` with the stand-in forward; expert `unused_expert` of layer
// `unused_layer` receives no token. Returns the written calib.h5.
std::string fake_calibrate(const std::string& model, const std::string& path, int64_t unused_layer, int64_t unused_expert) {
  auto fwd = test::SiteFakeForward::for_model(model, 11);
  fwd->unused_layer = unused_layer;
  fwd->unused_expert = unused_expert;
  CalibrateOptions o;
  o.model = model;
  o.progress = false;
  const ModelConfig cfg = load_config(model);
  auto ck = Checkpoint::open(model);
  const CalibData d = calibrate_with(*fwd, o, cfg, *ck, at::zeros({2, 12}, at::kLong), "fake forward (test)");
  write_calib_file(path, d);
  return path;
}

// A small demo model: 4 experts (top-2), hidden 64, expert intermediate 32.
DemoShape small_shape(int64_t layers) {
  DemoShape shape;
  shape.layers = layers;
  shape.experts = 4;
  shape.top_k = 2;
  shape.hidden = 64;
  shape.expert_inter = 32;
  shape.vocab = 64;
  shape.head_dim = 16;
  return shape;
}

std::string write_recipe(const std::string& dir, const std::string& name, const std::string& body) {
  const std::string p = dir + "/" + name + ".yaml";
  test::write_file(p, "recipe: " + name + "\n" + body);
  return p;
}

// Checks one calibrated export against its calib file; returns the number of input scales.
size_t check_export(const std::string& out, const std::string& src, const std::string& calib_path, bool ct) {
  VerifyResult r = verify_export(out, src);
  for (const auto& p : r.problems) UNSCOPED_INFO(p);
  CHECK(r.problems.empty());
  CHECK(r.experts_quantized == r.experts_expected);
  const CalibData calib = read_calib_file(calib_path);
  const auto rep = nlohmann::json::parse(test::read_file(out + "/report.json"));
  auto ck = Checkpoint::open(out);
  // site -> amax; members of a fusion group (report: fusion_group, e.g. layers.0.attn.{q,k,v}) share the largest
  std::map<std::string, float> expect_amax, group_amax;
  for (const auto& s : rep["sites"]) {
    if (s["format"].is_null() || !s["input_quant"].get<bool>()) continue;
    const CalibSite* c = calib.find(s["site"].get<std::string>());
    REQUIRE(c != nullptr);
    expect_amax[s["site"]] = c->amax;
    if (s.contains("fusion_group")) group_amax[s["fusion_group"]] = std::max(group_amax[s["fusion_group"]], c->amax);
  }
  for (const auto& s : rep["sites"])
    if (expect_amax.count(s["site"]) && s.contains("fusion_group")) expect_amax[s["site"]] = group_amax.at(s["fusion_group"]);
  size_t n = 0;
  for (const auto& s : rep["sites"]) {
    if (s["format"].is_null() || !s["input_quant"].get<bool>()) continue;
    const std::string name = s["site"], module = s["module"], format = s["format"];
    INFO(out << ": " << name << " (" << module << ")");
    const float amax = expect_amax.at(name);
    float stored = 0, want = 0;
    if (ct && format == "nvfp4") {
      REQUIRE(ck->has(module + ".input_global_scale"));
      stored = tensor_view(*ck, module + ".input_global_scale").item<float>();
      want = input_global_scale_from_amax(amax);
    } else {
      REQUIRE(ck->has(module + ".input_scale"));
      stored = tensor_view(*ck, module + ".input_scale").item<float>();
      want = amax / (format == "nvfp4" ? 2688.0f : 448.0f);
    }
    CHECK(std::isfinite(stored));
    CHECK(stored > 0);
    CHECK(stored == want);
    INFO(s.dump());
    REQUIRE(s.contains("input_scale"));
    CHECK(s["input_scale"].get<float>() == input_scale_from_amax(format, amax));
    ++n;
  }
  // The calibration section of the report.
  const auto& cal = rep["calibration"];
  REQUIRE(cal.is_object());
  CHECK(cal["file"] == calib_path);
  CHECK(cal["input_scales"] == n);
  CHECK(cal["data"] == "fake forward (test)");
  CHECK(cal["fallbacks"].size() == calib.fallbacks().size());
  CHECK(cal["coverage"].size() == calib.layers.size());
  const std::string md = test::read_file(out + "/report.md");
  CHECK(md.find("## Calibration") != std::string::npos);
  CHECK(md.find("experts with no token") != std::string::npos);
  return n;
}

}  // namespace

TEST_CASE("quantize --calib: NVFP4 W4A4 and FP8 W8A8 exports (ModelOpt, compressed-tensors) on the demo checkpoint",
          "[calib]") {
  test::TempDir tmp;
  DemoShape shape = small_shape(2);
  const std::string src = tmp.path + "/m";
  write_demo_checkpoint(src, true, shape, 3, false);
  const std::string calib = fake_calibrate(src, tmp.path + "/calib.h5", 1, 2);
  const CalibData d = read_calib_file(calib);
  // Expert 2 of layer 1 fell back: gate, up and down, flagged in the file.
  REQUIRE(d.fallbacks().size() == 3);
  for (const auto* f : d.fallbacks()) CHECK((f->layer == 1 && f->expert == 2));

  const std::string ct_nvfp4 = write_recipe(tmp.path, "ct_nvfp4_w4a4", "export: compressed-tensors\nrules:\n  - roles: [experts]\n"
                                                                      "    format: nvfp4\n    input_quant: true\n");
  const std::string ct_fp8 = write_recipe(tmp.path, "ct_fp8_w8a8", "export: compressed-tensors\nrules:\n  - sites: \"*\"\n"
                                                                  "    format: fp8\n    input_quant: true\n");
  struct Case { std::string recipe; bool ct; size_t min_scales; };
  for (const Case& c : {Case{recipes_dir() + "/nvfp4_experts_only.yaml", false, 2 * 4 * 3},
                        Case{recipes_dir() + "/fp8.yaml", false, 2 * 4 * 3 + 2 * 4}, Case{ct_nvfp4, true, 2 * 4 * 3},
                        Case{ct_fp8, true, 2 * 4 * 3 + 2 * 4}}) {
    // A stable section name (the recipe's file name): the temp dir differs on every run of the
    // test case, and Catch2 would otherwise see new sections forever.
    DYNAMIC_SECTION(c.recipe.substr(c.recipe.rfind('/') + 1)) {
      QuantizeOptions o;
      o.model = src;
      o.recipe = c.recipe;
      o.calib = calib;
      o.out = tmp.path + "/out";
      o.overwrite = true;
      quantize_checkpoint(o);
      CHECK(check_export(o.out, src, calib, c.ct) >= c.min_scales);
      // gate and up of every expert: one input scale.
      auto ck = Checkpoint::open(o.out);
      const std::string key = c.ct && c.recipe == ct_nvfp4 ? ".input_global_scale" : ".input_scale";
      for (int l = 0; l < 2; ++l)
        for (int e = 0; e < 4; ++e) {
          const std::string p = "model.layers." + std::to_string(l) + ".mlp.experts." + std::to_string(e) + ".";
          CHECK(at::equal(tensor_view(*ck, p + "gate_proj" + key), tensor_view(*ck, p + "up_proj" + key)));
        }
    }
  }
}

TEST_CASE("quantize --calib: refusals (other model, weight-only recipe warns, missing statistics)", "[calib]") {
  test::TempDir tmp;
  DemoShape shape = small_shape(1);
  write_demo_checkpoint(tmp.path + "/a", false, shape, 3, false);
  shape.experts = 6;
  write_demo_checkpoint(tmp.path + "/b", false, shape, 3, false);
  const std::string calib_a = fake_calibrate(tmp.path + "/a", tmp.path + "/a.h5", -1, -1);
  QuantizeOptions o;
  o.model = tmp.path + "/b";
  o.recipe = recipes_dir() + "/nvfp4_experts_only.yaml";
  o.calib = calib_a;
  o.out = tmp.path + "/out";
  const std::string dir_a = tmp.path + "/a", dir_b = tmp.path + "/b";
  REQUIRE_ERROR_MENTIONS(quantize_checkpoint(o), "a.h5", "another model", dir_a.c_str(), dir_b.c_str());
  CHECK_FALSE(std::filesystem::exists(o.out));

  // A recipe without input_quant: the file is not needed; the report says it was not used.
  o.model = tmp.path + "/a";
  o.recipe = recipes_dir() + "/fp8_experts_weight_only.yaml";
  quantize_checkpoint(o);
  const auto rep = nlohmann::json::parse(test::read_file(o.out + "/report.json"));
  bool warned = false;
  for (const auto& w : rep["warnings"]) warned = warned || w.get<std::string>().find("not used") != std::string::npos;
  CHECK(warned);

  // A site whose input the file has no statistics for (here: removed from the file).
  CalibData d = read_calib_file(calib_a);
  d.sites.erase(std::remove_if(d.sites.begin(), d.sites.end(), [](const CalibSite& s) { return s.name == "layers.0.experts.3.down"; }),
                d.sites.end());
  write_calib_file(tmp.path + "/holes.h5", d);
  o.recipe = recipes_dir() + "/nvfp4_experts_only.yaml";
  o.calib = tmp.path + "/holes.h5";
  o.out = tmp.path + "/out2";
  REQUIRE_ERROR_MENTIONS(quantize_checkpoint(o), "holes.h5", "layers.0.experts.3.down", "input_quant");
  // An amax of 0 cannot give an input scale.
  d = read_calib_file(calib_a);
  for (auto& s : d.sites)
    if (s.name == "layers.0.experts.1.gate") s.amax = 0;
  write_calib_file(tmp.path + "/zero.h5", d);
  o.calib = tmp.path + "/zero.h5";
  REQUIRE_ERROR_MENTIONS(quantize_checkpoint(o), "zero.h5", "layers.0.experts.1.gate", "amax 0");
}

TEST_CASE("quantize --calib + verify: W4A4 and W8A8 on every family's tiny checkpoint", "[tiny]") {
  const std::string root = test::tiny_dir();
  test::TempDir tmp;
  for (const std::string& fam : test::tiny_families()) {
    const std::string src = root + "/" + fam + "/model";
    const ModelConfig cfg = load_config(src);
    const int64_t moe_layer = std::max<int64_t>(cfg.first_k_dense_replace, 0);
    const std::string calib = fake_calibrate(src, tmp.path + "/" + fam + ".h5", moe_layer, 1);
    for (const char* recipe : {"nvfp4_experts_only", "fp8"}) {
      DYNAMIC_SECTION(fam << " " << recipe) {
        QuantizeOptions o;
        o.model = src;
        o.recipe = recipes_dir() + "/" + recipe + ".yaml";
        o.calib = calib;
        o.out = tmp.path + "/" + fam + "-" + recipe;
        if (std::string(fam) == "gpt_oss") {  // vLLM reads gpt-oss experts fused and interleaved only
          REQUIRE_ERROR_MENTIONS(quantize_checkpoint(o), "gpt-oss experts written per expert do not load in vLLM");
          continue;
        }
        quantize_checkpoint(o);
        CHECK(check_export(o.out, src, calib, false) > 0);
        const auto rep = nlohmann::json::parse(test::read_file(o.out + "/report.json"));
        bool listed = false;
        for (const auto& c : rep["calibration"]["coverage"])
          if (c["layer"] == moe_layer) listed = c["zero_token_experts"] == nlohmann::json::array({1});
        CHECK(listed);
      }
    }
  }
}
