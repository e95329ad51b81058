// moeq compare --calib: the output error of W4A4 / W8A8 recipes with their activations
// fake-quantized (input scales from calib.h5) next to their weights-only twins, on the tiny
// checkpoints (real calibration through the native forward).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <nlohmann/json.hpp>

#include "calib/calib_file.h"
#include "calib/calibrate.h"
#include "app/compare/act_fake_quant.h"
#include "app/compare/compare.h"
#include "app/compare/compare_report.h"
#include "app/compare/eval_outputs.h"
#include "app/compare/input_transform.h"
#include "io/checkpoint.h"
#include "model/plugin.h"
#include "calib/calibrators/input_scales.h"
#include "core/format_util.h"
#include "recipe/recipe.h"
#include "test_util.h"

using namespace moeq;

namespace {

std::string recipe_path(const std::string& name) { return std::string(MOEQ_SOURCE_DIR) + "/recipes/" + name + ".yaml"; }

at::Tensor fixed_ids(int64_t n, int64_t s, int64_t vocab, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::randint(vocab, {n, s}, g, at::TensorOptions().dtype(at::kLong));
}

// calib.h5 of `model` from the native forward over random ids (others than the eval ids).
std::string calibrate_tiny(const std::string& model, const std::string& path) {
  CalibrateOptions o;
  o.model = model;
  o.dtype = "f32";
  o.progress = false;
  const ModelConfig cfg = load_config(model);
  write_calib_file(path, calibrate_ids(o, fixed_ids(4, 16, cfg.vocab_size, 3), "random ids (test)"));
  return path;
}

CompareOptions tiny_options(const std::string& model, const std::string& calib) {
  CompareOptions o;
  o.model = model;
  o.recipes = {recipe_path("nvfp4_experts_only"), recipe_path("fp8")};
  o.eval_ids = fixed_ids(4, 16, load_config(model).vocab_size, 11);
  o.eval_dtype = "float32";
  o.eval_chunk_samples = 2;
  o.calib = calib;
  return o;
}

const char* const kFamilies[] = {"qwen3_moe", "olmoe"};

}  // namespace

TEST_CASE("compare --calib: W4A4 / W8A8 rows cost more KL than their weights-only twins, reproducibly", "[tiny][compare]") {
  for (const char* fam : kFamilies) {
    DYNAMIC_SECTION(fam) {
      const std::string model = test::tiny_dir() + "/" + fam + "/model";
      test::TempDir t;
      const std::string calib = calibrate_tiny(model, t.path + "/calib.h5");
      const CompareResult r = run_compare(tiny_options(model, calib));
      REQUIRE(r.variants.size() == 4);
      const Variant &w4a4 = r.variants[0], &w4 = r.variants[1], &w8a8 = r.variants[2], &w8 = r.variants[3];
      CHECK(w4a4.name == "nvfp4_experts_only");
      CHECK(w4.name == "nvfp4_experts_only (weights only)");
      CHECK(w8a8.name == "fp8");
      CHECK(w8.name == "fp8 (weights only)");
      CHECK(w4a4.activations == "W4A4 (activations from calib.h5)");
      CHECK(w8a8.activations == "W8A8 (activations from calib.h5)");
      CHECK((w4a4.activations_quantized && w8a8.activations_quantized));
      CHECK((w4.weights_only_twin && w8.weights_only_twin && !w4.activations_quantized));
      CHECK(w4a4.input_quant_sites > 0);
      CHECK(w4a4.expected_bytes == w4.expected_bytes);  // same weights, same export
      INFO("KL W4A4 " << w4a4.output.kl_mean << " W4 " << w4.output.kl_mean << " W8A8 " << w8a8.output.kl_mean
                      << " W8 " << w8.output.kl_mean);
      CHECK(w4a4.output.kl_mean > 1.5 * w4.output.kl_mean);
      CHECK(w8a8.output.kl_mean > 1.5 * w8.output.kl_mean);
      CHECK(w8.output.kl_mean > 0);

      // Without --calib the same recipes are measured with weights only: the twins' numbers.
      CompareOptions plain = tiny_options(model, "");
      const CompareResult p = run_compare(plain);
      REQUIRE(p.variants.size() == 2);
      CHECK(p.variants[0].output.kl_mean == w4.output.kl_mean);
      CHECK(p.variants[1].output.kl_mean == w8.output.kl_mean);
      CHECK(p.variants[0].activations == "none: W4A4 activations not measured (no --calib)");
      CHECK(p.variants[0].warnings.back().find("pass --calib calib.h5") != std::string::npos);

      // Same numbers again.
      const CompareResult again = run_compare(tiny_options(model, calib));
      for (size_t i = 0; i < 4; ++i) {
        CHECK(again.variants[i].output.kl_mean == r.variants[i].output.kl_mean);
        CHECK(again.variants[i].output.top1 == r.variants[i].output.top1);
      }

      // The reports show the activation column; the pick never takes a twin.
      write_compare_report(t.path + "/rep", r, 3.0, 1.0);
      const auto j = nlohmann::json::parse(test::read_file(t.path + "/rep/report.json"));
      CHECK(j["output_error"]["calib"] == calib);
      CHECK(j["variants"][0]["activations"]["label"] == "W4A4 (activations from calib.h5)");
      CHECK(j["variants"][0]["activations"]["quantized"] == true);
      CHECK(j["variants"][1]["activations"]["weights_only_twin"] == true);
      CHECK(j["pick"]["chosen"].get<std::string>().find("weights only") == std::string::npos);
      const std::string md = test::read_file(t.path + "/rep/report.md");
      CHECK(md.find("| nvfp4_experts_only | W4A4 (activations from calib.h5) |") != std::string::npos);
      CHECK(md.find("Rows marked (weights only)") != std::string::npos);
      CHECK(test::read_file(t.path + "/rep/report.html").find("<td>W8A8 (activations from calib.h5)</td>") != std::string::npos);
    }
  }
}

TEST_CASE("compare --calib: the input transforms apply each site's and each expert's export scale", "[tiny][compare]") {
  const std::string model = test::tiny_dir() + "/qwen3_moe/model";
  test::TempDir t;
  const std::string calib_path = calibrate_tiny(model, t.path + "/calib.h5");
  const CalibData calib = read_calib_file(calib_path);
  auto ck = Checkpoint::open(model);
  const ModelConfig cfg = load_config(model);
  const SiteMap map = map_sites(plugin_for(cfg), cfg, *ck);

  // NVFP4 on the experts: each row fake-quantized with its own expert's (gate/up-shared) scale.
  const Plan w4a4 = make_plan(load_recipe(recipe_path("nvfp4_experts_only")), map.sites, false);
  const auto scales = input_scales(w4a4, calib, calib_path);
  const InputTransforms tf = plan_input_transforms(w4a4, calib, calib_path);
  REQUIRE(tf.experts);
  CHECK(tf.formats == std::set<std::string>{"nvfp4"});
  const int64_t E = cfg.num_experts, H = cfg.hidden_size;
  const at::Tensor x = at::randn({2 * E, H}, at::detail::createCPUGenerator(5)) * 3;
  const at::Tensor rows = at::arange(2 * E, at::kLong).remainder(E);
  const at::Tensor got = tf.experts(0, "gate_up", x, rows);
  for (int64_t i = 0; i < 2 * E; ++i) {
    const std::string site = "layers.0.experts." + std::to_string(i % E) + ".gate";
    const float s = scales.at(site).scale;
    CHECK(s == scales.at("layers.0.experts." + std::to_string(i % E) + ".up").scale);
    INFO("row " << i);
    CHECK(at::equal(got[i], nvfp4_input_fake_quant(x.narrow(0, i, 1), at::scalar_tensor(s, at::kFloat))[0]));
  }
  CHECK_FALSE(at::equal(got, x));
  // Attention is not input-quantized by this recipe: its input passes unchanged.
  const Site* q = nullptr;
  for (const Site& s : map.sites)
    if (s.name == "layers.0.attn.q") q = &s;
  REQUIRE(q);
  CHECK(at::equal(tf.linear(*q, x.narrow(0, 0, 3)), x.narrow(0, 0, 3)));

  // FP8 W8A8 on every linear: a dense site gets its static per-tensor scale.
  const Plan w8a8 = make_plan(load_recipe(recipe_path("fp8")), map.sites, false);
  const InputTransforms tf8 = plan_input_transforms(w8a8, calib, calib_path);
  const float sq = input_scales(w8a8, calib, calib_path).at("layers.0.attn.q").scale;
  CHECK(at::equal(tf8.linear(*q, x), fp8_input_fake_quant(x, at::scalar_tensor(sq, at::kFloat))));
}

TEST_CASE("compare --calib: refusals and warnings", "[tiny][compare]") {
  test::TempDir t;
  const std::string qwen = test::tiny_dir() + "/qwen3_moe/model", olmoe = test::tiny_dir() + "/olmoe/model";
  const std::string calib = calibrate_tiny(qwen, t.path + "/calib.h5");
  CompareOptions o = tiny_options(qwen, calib);
  o.eval_ids = at::Tensor();
  REQUIRE_ERROR_MENTIONS(run_compare(o), "--calib", "--eval");
  REQUIRE_ERROR_MENTIONS(run_compare(tiny_options(olmoe, calib)), "was made for another model");
  CompareOptions weight_only = tiny_options(qwen, calib);
  weight_only.recipes = {recipe_path("fp8_experts_weight_only")};
  const CompareResult r = run_compare(weight_only);
  REQUIRE(r.variants.size() == 1);  // no twin: nothing to quantize in the activations
  CHECK(r.variants[0].warnings.back().find("quantizes no activations") != std::string::npos);
  // --formats with --calib: nvfp4 / fp8 become W4A4 / W8A8, int4 stays weight-only.
  CompareOptions formats = tiny_options(qwen, calib);
  formats.recipes.clear();
  formats.formats = {"nvfp4", "int4"};
  const CompareResult f = run_compare(formats);
  REQUIRE(f.variants.size() == 3);
  CHECK(f.variants[0].activations == "W4A4 (activations from calib.h5)");
  CHECK(f.variants[1].name == "nvfp4 (weights only)");
  CHECK(f.variants[2].activations == "none (weight-only recipe)");
}

TEST_CASE("compare --activations-only: the source weights with the recipe's activation quantization", "[tiny][compare]") {
  const std::string model = test::tiny_dir() + "/qwen3_moe/model";
  test::TempDir t;
  const std::string calib_path = calibrate_tiny(model, t.path + "/calib.h5");
  CompareOptions o = tiny_options(model, calib_path);
  o.recipes = {recipe_path("nvfp4_experts_only"), recipe_path("fp8_experts_weight_only")};
  const CompareResult plain = run_compare(o);
  o.activations_only = true;
  const CompareResult r = run_compare(o);
  // nvfp4_experts_only: W4A4, weights only, activations only; the weight-only recipe gets no twin.
  REQUIRE(plain.variants.size() == 3);
  REQUIRE(r.variants.size() == 4);
  const Variant &w4a4 = r.variants[0], &w4 = r.variants[1], &a4 = r.variants[2];
  CHECK(a4.name == "nvfp4_experts_only (activations only)");
  CHECK((a4.activations_only_twin && a4.activations_quantized && a4.reference_row() && !a4.weights_only_twin));
  CHECK(a4.activations ==
        "W4A4 (activations from calib.h5; weights at source precision: reference for nvfp4_experts_only)");
  CHECK(a4.all.quantized == 0);
  CHECK(a4.sites.empty());
  CHECK(a4.expected_bytes == a4.source_bytes);
  CHECK(r.variants[3].name == "fp8_experts_weight_only");
  // The other rows are unchanged by the extra row.
  CHECK(w4a4.output.kl_mean == plain.variants[0].output.kl_mean);
  CHECK(w4.output.kl_mean == plain.variants[1].output.kl_mean);
  CHECK(r.variants[3].output.kl_mean == plain.variants[2].output.kl_mean);
  INFO("KL W4A4 " << w4a4.output.kl_mean << " weights only " << w4.output.kl_mean << " activations only "
                  << a4.output.kl_mean);
  CHECK(a4.output.kl_mean > 0);

  // Oracle: the unquantized forward with each routed expert's rows fake-quantized by hand with its
  // expert's export scale (input_scales: gate and up share one), through evaluate_outputs directly.
  const CalibData calib = read_calib_file(calib_path);
  auto ck = Checkpoint::open(model);
  const ModelConfig cfg = load_config(model);
  const SiteMap map = map_sites(plugin_for(cfg), cfg, *ck);
  const auto scales = input_scales(make_plan(load_recipe(recipe_path("nvfp4_experts_only")), map.sites, false), calib,
                                   calib_path);
  InputTransforms hand;
  hand.experts = [&](int64_t layer, const std::string& proj, const at::Tensor& x, const at::Tensor& rows) {
    std::vector<float> s;
    for (int64_t e = 0; e < cfg.num_experts; ++e)
      s.push_back(scales
                      .at("layers." + std::to_string(layer) + ".experts." + std::to_string(e) +
                          (proj == "down" ? ".down" : ".gate"))
                      .scale);
    return nvfp4_input_fake_quant(x, at::tensor(s, at::kFloat).index_select(0, rows));
  };
  EvalOptions eo;
  eo.ids = o.eval_ids;
  eo.dtype = at::kFloat;
  eo.chunk_samples = o.eval_chunk_samples;
  const EvalResult want = evaluate_outputs(ck, cfg, {WeightTransform{}}, eo, {hand});
  CHECK(a4.output.kl_mean == want.variants[0].kl_mean);
  CHECK(a4.output.top1 == want.variants[0].top1);
  CHECK(a4.output.ppl_quant == want.variants[0].ppl_quant);

  // Reports: the row is marked and never picked.
  write_compare_report(t.path + "/rep", r, 3.0, 1.0);
  const auto j = nlohmann::json::parse(test::read_file(t.path + "/rep/report.json"));
  CHECK(j["variants"][2]["activations"]["activations_only_twin"] == true);
  CHECK(j["variants"][2]["quantized_sites"] == 0);
  CHECK(j["pick"]["chosen"].get<std::string>().find("activations only") == std::string::npos);
  CHECK(test::read_file(t.path + "/rep/report.md").find("Rows marked (activations only)") != std::string::npos);
  // The row quantizes no weight: its weight columns say so (no NaN SQNR, no 0 bits/weight), in
  // every output; report.json has nulls, not NaN or 0.
  const auto& ja = j["variants"][2];
  CHECK(ja["bits_per_weight"].is_null());
  CHECK(ja["summary"]["mean_sqnr_db"].is_null());
  CHECK(ja["summary"]["min_sqnr_db"].is_null());
  CHECK(ja["formats"].empty());
  CHECK(ja["export_aux"].is_null());
  const std::string md = test::read_file(t.path + "/rep/report.md");
  const std::string row = "| nvfp4_experts_only (activations only) | source weights | 0 / " + std::to_string(a4.sites_total) +
                          " | " + human_bytes(a4.source_bytes) + " | 1.00x | source weights | \u2014 | \u2014 | \u2014 | \u2014 |\n";
  CHECK(md.find(row) != std::string::npos);
  CHECK(md.find("| " + human_bytes(a4.source_bytes) + " | source weights | " + kl_text(a4.output.kl_mean) + " |") !=
        std::string::npos);  // the output-error table's bits/weight column
  const std::string html = test::read_file(t.path + "/rep/report.html");
  CHECK(html.find("<td>source weights</td>") != std::string::npos);
  CHECK(html.find("<td class=n>source weights</td>") != std::string::npos);
  for (const std::string& text : {md, html}) CHECK(text.find("nan") == std::string::npos);
  const std::string line = variant_lines(a4);
  INFO(line);
  CHECK(line.find("source weights (none quantized)") != std::string::npos);
  CHECK(line.find("bits/weight") == std::string::npos);
  CHECK(line.find("nan") == std::string::npos);
  CHECK(line.find("KL " + kl_text(a4.output.kl_mean)) != std::string::npos);
  CHECK(variant_lines(w4a4).find(" bits/weight  mean SQNR ") != std::string::npos);

  // Without --calib there is nothing to add: refused.
  CompareOptions no_calib = tiny_options(model, "");
  no_calib.activations_only = true;
  REQUIRE_ERROR_MENTIONS(run_compare(no_calib), "--activations-only", "--calib");
}
