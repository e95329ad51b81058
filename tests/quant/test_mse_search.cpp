// MSE weight calibration (calib/calibrators/mse_search.h): against NVIDIA Model Optimizer's own
// calibrators (tests/python/oracle_mse.py), never worse than max, the CPU kernel against
// the ATen-ops search and against CUDA, the recipe keys, and quantize -> export -> verify.
#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "export/verify.h"
#include "export/export_test_util.h"
#include "formats/e2m1_test_util.h"
#include "formats/format.h"
#include "tensor/aten_view.h"
#include "io/checkpoint.h"
#include "app/run/batches.h"
#include "calib/calibrators/mse_search.h"
#include "recipe/recipe.h"
#include "test_util.h"

using namespace moeq;
using moeq::test::byte_diff;

namespace {

WeightCalibrator mse(double start = 0.25, double stop = 4.0, double step = 0.1, bool sweep = false) {
  WeightCalibrator c;
  c.method = "mse";
  c.start_multiplier = start;
  c.stop_multiplier = stop;
  c.step_size = step;
  c.fp8_scale_sweep = sweep;
  return c;
}
WeightCalibrator sweep() { return mse(0.25, 4.0, 0.1, true); }

FormatParams gran(const char* g) {
  FormatParams p;
  p.granularity = g;
  return p;
}

at::Tensor own_amax(const at::Tensor& w) { return (w.dim() == 3 ? w.abs().amax({1, 2}) : w.abs().amax()).to(at::kFloat); }

// Squared FP8 error of w quantized with the given amax (per tensor [E] or per row), summed per
// tensor or row, through moeq's own fp8 quantize/dequantize.
at::Tensor fp8_sq_error(const at::Tensor& w, const at::Tensor& amax, bool channel) {
  const QuantFormat& f = format_by_name("fp8");
  const at::Tensor d = f.dequantize(f.quantize(w, gran(channel ? "channel" : "tensor"), amax)).to(at::kDouble) - w.to(at::kDouble);
  const at::Tensor sq = d.square();
  return channel ? sq.sum(-1) : (w.dim() == 3 ? sq.sum({1, 2}) : sq.sum());
}

// Blocks where two byte choices differ: each must be a near-tie (the two scales' errors, in
// moeq's arithmetic, within rel of each other). Returns how many blocks differ.
int64_t nvfp4_differing_blocks_are_ties(const at::Tensor& w, const at::Tensor& amax, const at::Tensor& a, const at::Tensor& b,
                                        double rel) {
  const at::Tensor ea = nvfp4_block_errors(w, amax, a).flatten(), eb = nvfp4_block_errors(w, amax, b).flatten();
  const at::Tensor differ = (a.contiguous().view(at::kByte).flatten() != b.contiguous().view(at::kByte).flatten());
  const at::Tensor gap = (ea - eb).abs() / at::maximum(ea, eb).clamp_min(1e-300);
  const int64_t n = differ.sum().item<int64_t>();
  if (n) {
    const double worst = at::where(differ, gap, at::zeros_like(gap)).max().item<double>();
    INFO(n << " differing blocks; the largest relative error gap among them " << worst);
    CHECK(worst <= rel);
  }
  return n;
}

}  // namespace

TEST_CASE("mse search matches ModelOpt's MSE calibrators", "[mse][oracle]") {
  // Fixture: tests/python/oracle_mse.py (nvidia-modelopt 0.47.0 MseCalibrator /
  // NVFP4MSECalibrator on CPU, its export of the chosen amax).
  const auto ck = Checkpoint::open_file(test::oracle_dir() + "/mse.safetensors");
  const auto keys = test::oracle_cases(*ck);
  REQUIRE(keys.size() == 13);
  int64_t fp8_values = 0, fp8_equal = 0, blocks = 0, blocks_differ = 0;
  for (const auto& key : keys) {
    INFO("case " << key);
    const at::Tensor w = tensor_view(*ck, key + ".input");
    const at::Tensor kind = tensor_view(*ck, key + ".kind");
    const bool is_fp8 = kind[0].item<int64_t>() == 0, channel = kind[1].item<int64_t>(), sw = kind[2].item<int64_t>(),
               pair = kind[3].item<int64_t>();
    const at::Tensor m = tensor_view(*ck, key + ".mult");
    const WeightCalibrator cal = mse(m[0].item<double>(), m[1].item<double>(), m[2].item<double>(), sw);
    const at::Tensor ref_amax = tensor_view(*ck, key + ".amax");
    if (is_fp8) {
      at::Tensor amax;
      if (channel) {
        amax = fp8_channel_mse_amax(w, cal);
      } else if (pair) {
        const at::Tensor up = tensor_view(*ck, key + ".input2");
        amax = fp8_tensor_mse_amax({w, up}, at::maximum(own_amax(w), own_amax(up)), cal);
      } else {
        amax = fp8_tensor_mse_amax({w}, own_amax(w), cal);
      }
      amax = amax.reshape(ref_amax.sizes());
      fp8_values += amax.numel();
      const at::Tensor same = amax == ref_amax;
      fp8_equal += same.sum().item<int64_t>();
      if (!same.all().item<bool>()) {  // a near-tie: both amaxes' errors within 1e-6
        REQUIRE(!pair);
        const at::Tensor e1 = fp8_sq_error(w, amax, channel), e2 = fp8_sq_error(w, ref_amax, channel);
        CHECK(((e1 - e2).abs() / at::maximum(e1, e2)).max().item<double>() <= 1e-6);
      }
      // ModelOpt's export of its chosen amax is moeq's fp8 with that amax, byte for byte.
      const QuantFormat& f = format_by_name("fp8");
      const QuantizedTensor q = f.quantize(w, gran(channel ? "channel" : "tensor"), ref_amax);
      CHECK(byte_diff(q.parts.at("weight"), tensor_view(*ck, key + ".weight")) == "");
      CHECK(byte_diff(q.parts.at("weight_scale"), tensor_view(*ck, key + ".weight_scale").reshape(q.parts.at("weight_scale").sizes())) == "");
      if (pair) {
        const QuantizedTensor qu = f.quantize(tensor_view(*ck, key + ".input2"), gran("tensor"), ref_amax);
        CHECK(byte_diff(qu.parts.at("weight"), tensor_view(*ck, key + ".weight2")) == "");
      }
    } else {
      const at::Tensor ga = tensor_view(*ck, key + ".global_amax");
      const at::Tensor ga_arg = w.dim() == 2 ? ga.reshape({}) : ga;
      const at::Tensor ref_scales = tensor_view(*ck, key + ".weight_scale");
      const at::Tensor bytes = nvfp4_mse_block_scales(w, ga_arg, cal);
      CHECK(byte_diff(bytes, nvfp4_mse_block_scales(w, ga_arg, cal, /*torch_ops=*/true)) == "");
      blocks += bytes.numel();
      // Different picks only where ModelOpt's float32 fake quant and moeq's export arithmetic
      // round a near-tie apart: the two scales' block errors within 1e-5 of each other.
      blocks_differ += nvfp4_differing_blocks_are_ties(w, ga_arg, bytes, ref_scales, 1e-5);
      // ModelOpt's static export of its chosen per-block amax is moeq's NVFP4 with those
      // block scales, byte for byte.
      const QuantizedTensor q = format_by_name("nvfp4").quantize_with_block_scales(w, {}, ga_arg, ref_scales);
      CHECK(byte_diff(q.parts.at("weight"), tensor_view(*ck, key + ".weight")) == "");
      CHECK(byte_diff(q.parts.at("weight_scale"), ref_scales) == "");
      CHECK(byte_diff(q.parts.at("weight_scale_2"), tensor_view(*ck, key + ".weight_scale_2")) == "");
    }
  }
  INFO("fp8 amax equal " << fp8_equal << " / " << fp8_values << "; nvfp4 blocks differing " << blocks_differ << " / " << blocks);
  CHECK(fp8_values == 3 + 1 + 1 + 48 + 32 + 2 + 2);
  CHECK(fp8_equal == fp8_values);
  CHECK(blocks_differ == 0);  // this fixture has no near-tie: every block matches ModelOpt
}

TEST_CASE("mse: the error is never above max's, and lower on heavy tails", "[mse]") {
  const QuantFormat& nv = format_by_name("nvfp4");
  const at::Tensor gauss = test::gaussian({4, 64, 256}, 11) * 0.02;
  const at::Tensor heavy = test::student_t3({4, 64, 256}, 12) * at::where(test::gaussian({4, 64, 256}, 13) > 2.8, 8.0, 1.0);
  for (const auto& [name, w] : std::vector<std::pair<std::string, at::Tensor>>{{"gauss", gauss}, {"heavy", heavy}}) {
    INFO(name);
    const at::Tensor a = own_amax(w);
    // NVFP4 sweep: the max path's byte is one of the 126 candidates, so every block is <=.
    const QuantizedTensor qmax = nv.quantize(w, {});
    const at::Tensor emax = nvfp4_block_errors(w, a, qmax.parts.at("weight_scale"));
    const at::Tensor bytes = nvfp4_mse_block_scales(w, a, sweep());
    const at::Tensor emse = nvfp4_block_errors(w, a, bytes);
    CHECK((emse <= emax).all().item<bool>());
    const double gain = emax.sum().item<double>() / emse.sum().item<double>();
    INFO("nvfp4 sweep error ratio max/mse " << gain);
    CHECK(gain > (name == "heavy" ? 1.05 : 1.0));
    // The dequantized export has exactly the searched error.
    const at::Tensor deq = nv.dequantize(nv.quantize_with_block_scales(w, {}, a, bytes)).to(at::kDouble);
    CHECK(std::abs((deq - w.to(at::kDouble)).square().sum().item<double>() / emse.sum().item<double>() - 1) < 1e-9);
    // FP8 with multipliers that include 1 (0.25, 0.5, ..., 4): per tensor and per row <= max.
    const WeightCalibrator grid = mse(0.25, 4.0, 0.25);
    REQUIRE(grid.num_steps() == 16);
    const at::Tensor et = fp8_sq_error(w, fp8_tensor_mse_amax({w}, a, grid), false);
    CHECK((et <= fp8_sq_error(w, a, false)).all().item<bool>());
    const at::Tensor rows = w.abs().amax({2});
    const at::Tensor ec = fp8_sq_error(w, fp8_channel_mse_amax(w, grid), true);
    CHECK((ec <= fp8_sq_error(w, rows, true)).all().item<bool>());
    if (name == "heavy") CHECK(et.sum().item<double>() < fp8_sq_error(w, a, false).sum().item<double>());
  }
}

TEST_CASE("mse: NVFP4 CPU kernel == ATen-ops search; zero experts and blocks", "[mse]") {
  at::Tensor w = test::student_t3({3, 16, 64}, 21);
  w.index_put_({1}, 0.f);                                         // an all-zero expert: max's scales
  w.index_put_({2, 3, at::indexing::Slice(0, 16)}, 0.f);          // a zero block: the first candidate
  for (auto dt : {at::kBFloat16, at::kHalf, at::kFloat})
    for (const WeightCalibrator& c : {sweep(), mse(), mse(0.5, 2.0, 0.125)}) {
      INFO(dt << " " << c.describe());
      const at::Tensor x = w.to(dt), a = own_amax(x);
      const at::Tensor k = nvfp4_mse_block_scales(x, a, c), t = nvfp4_mse_block_scales(x, a, c, true);
      CHECK(byte_diff(k, t) == "");
      CHECK((k[1] == 0x38).all().item<bool>());  // fp8 1.0, as nvfp4 quantize writes for zeros
      if (c.fp8_scale_sweep) CHECK(k[2][3][0].item<int>() == 1);
      // 2D is the 3D search of one expert.
      CHECK(byte_diff(nvfp4_mse_block_scales(x[0], a[0], c), k[0]) == "");
    }
  REQUIRE_ERROR_MENTIONS(nvfp4_mse_block_scales(w, at::ones({2}), sweep()), "one per expert");
  REQUIRE_ERROR_MENTIONS(format_by_name("nvfp4").quantize_with_block_scales(w, {}, own_amax(w), at::zeros({3, 16, 4}, at::kByte)),
                         "bytes 1..126");
  REQUIRE_ERROR_MENTIONS(format_by_name("fp8").quantize_with_block_scales(w, {}, own_amax(w), at::ones({3, 16, 4}, at::kByte)),
                         "fp8", "block scales");
}

TEST_CASE("mse: CUDA search gives the CPU bytes", "[mse][cuda]") {
  if (!at::hasCUDA()) SKIP("no CUDA device");
  const at::Tensor w = test::student_t3({4, 64, 256}, 31).to(at::kBFloat16);
  const at::Tensor a = own_amax(w);
  for (const WeightCalibrator& c : {sweep(), mse()}) {
    INFO(c.describe());
    const at::Tensor cpu = nvfp4_mse_block_scales(w, a, c), gpu = nvfp4_mse_block_scales(w.cuda(), a.cuda(), c);
    CHECK(gpu.is_cuda());
    CHECK(byte_diff(cpu, gpu) == "");
    const QuantFormat& nv = format_by_name("nvfp4");
    test::require_same_parts(nv.quantize_with_block_scales(w, {}, a, cpu), nv.quantize_with_block_scales(w.cuda(), {}, a.cuda(), gpu));
  }
  const WeightCalibrator c = mse();
  CHECK(at::equal(fp8_tensor_mse_amax({w}, a, c), fp8_tensor_mse_amax({w.cuda()}, a.cuda(), c).cpu()));
  CHECK(at::equal(fp8_channel_mse_amax(w, c), fp8_channel_mse_amax(w.cuda(), c).cpu()));
}

TEST_CASE("mse: recipe keys, their errors, and ModelOpt's algorithm", "[mse]") {
  const std::string head = "rules:\n  - roles: [experts]\n    format: ";
  SECTION("rule and recipe-level calibrators") {
    Recipe r = parse_recipe("calibrator: {method: mse, fp8_scale_sweep: true}\n" + head +
                                "nvfp4\n  - roles: [attention]\n    format: fp8\n    calibrator: {method: mse, step_size: 0.25}\n"
                                "  - roles: [dense_mlp]\n    format: int4\n    calibrator: max\n",
                            "r.yaml");
    REQUIRE(r.rules.size() == 3);
    CHECK(r.rules[0].calibrator.describe() == "mse (fp8 scale sweep)");
    CHECK(r.rules[1].calibrator.describe() == "mse (amax x 0.25..4, 16 steps)");
    CHECK(r.rules[2].calibrator.describe() == "max");
    CHECK(mse().num_steps() == 39);  // ModelOpt's default: ceil(3.75 / 0.1) + 1
  }
  SECTION("errors name the file, line, rule and format") {
    REQUIRE_ERROR_MENTIONS(parse_recipe(head + "int4\n    calibrator: mse\n", "r.yaml"), "r.yaml:4", "rule 1", "int4", "calibrator: max");
    REQUIRE_ERROR_MENTIONS(parse_recipe(head + "fp8\n    calibrator: {method: mse, fp8_scale_sweep: true}\n", "r.yaml"),
                           "r.yaml:4", "format fp8", "fp8_scale_sweep");
    REQUIRE_ERROR_MENTIONS(parse_recipe("calibrator: mse\n" + head + "mxfp4\n", "r.yaml"), "r.yaml:3", "rule 1", "mxfp4");
    REQUIRE_ERROR_MENTIONS(parse_recipe(head + "nvfp4\n    calibrator: {method: mse, stp_size: 0.1}\n", "r.yaml"),
                           "r.yaml:4", "stp_size", "did you mean 'step_size'");
    REQUIRE_ERROR_MENTIONS(parse_recipe(head + "nvfp4\n    calibrator: minmax\n", "r.yaml"), "r.yaml:4", "minmax", "max, mse");
    REQUIRE_ERROR_MENTIONS(parse_recipe(head + "nvfp4\n    calibrator: {method: max, step_size: 0.1}\n", "r.yaml"),
                           "step_size", "only applies to method mse");
    REQUIRE_ERROR_MENTIONS(parse_recipe(head + "nvfp4\n    calibrator: {method: mse, step_size: -1}\n", "r.yaml"), "positive");
    REQUIRE_ERROR_MENTIONS(parse_recipe(head + "nvfp4\n    calibrator: {method: mse, start_multiplier: 2, stop_multiplier: 1}\n", "r.yaml"),
                           "start_multiplier", "above");
    // A disabled rule takes no calibrator check.
    CHECK_NOTHROW(parse_recipe("calibrator: mse\n" + head + "nvfp4\n  - roles: [attention]\n    enable: false\n", "r.yaml"));
  }
  SECTION("ModelOpt quantize: {algorithm: ...}") {
    const std::string q =
        "quantize:\n  algorithm:\n    method: mse\n    fp8_scale_sweep: true\n    layerwise: {enable: false}\n  quant_cfg:\n"
        "    - quantizer_name: '*'\n      enable: false\n"
        "    - quantizer_name: '*experts*weight_quantizer'\n      cfg: {num_bits: e2m1, block_sizes: {-1: 16, type: static, scale_bits: e4m3}}\n"
        "    - quantizer_name: '*self_attn*weight_quantizer'\n      cfg: {num_bits: e4m3, axis: null}\n"
        "    - quantizer_name: '*shared*weight_quantizer'\n      cfg: {num_bits: e2m1, block_sizes: {-1: 16, type: dynamic, scale_bits: e4m3}}\n";
    const Recipe r = parse_recipe(q, "m.yaml");
    REQUIRE(r.rules.size() == 4);
    CHECK(r.rules[1].calibrator.describe() == "mse (fp8 scale sweep)");
    CHECK(r.rules[2].calibrator.describe() == "max");  // ModelOpt's sweep leaves FP8 at max
    CHECK_THAT(r.rules[2].calibrator.note, Catch::Matchers::ContainsSubstring("static NVFP4 weights only"));
    CHECK(r.rules[3].calibrator.describe() == "max");  // and dynamic block quantizers
    CHECK_THAT(r.rules[3].calibrator.note, Catch::Matchers::ContainsSubstring("dynamic"));
    const Recipe m = parse_recipe("quantize:\n  algorithm: {method: mse, step_size: 0.5}\n  quant_cfg:\n"
                                  "    - quantizer_name: '*weight_quantizer'\n      cfg: {num_bits: e4m3}\n", "m.yaml");
    CHECK(m.rules[0].calibrator.describe() == "mse (amax x 0.25..4, 9 steps)");
    REQUIRE_ERROR_MENTIONS(parse_recipe("quantize:\n  algorithm: {method: mse}\n  quant_cfg:\n    - quantizer_name: '*weight_quantizer'\n"
                                        "      cfg: {num_bits: 4, block_sizes: {-1: 128}}\n", "m.yaml"),
                           "m.yaml:4", "int4");
    REQUIRE_ERROR_MENTIONS(parse_recipe("quantize:\n  algorithm: {method: awq}\n  quant_cfg: []\n", "m.yaml"), "awq", "max, mse");
  }
}

TEST_CASE("mse: quantize -> export -> verify on the demo checkpoint; scales are the search's", "[mse]") {
  test::TempDir tmp;
  for (bool fused : {false, true}) {
    DYNAMIC_SECTION((fused ? "fused" : "per-expert")) {
      const std::string rest = "  - roles: [attention, dense_mlp, shared_experts, other]\n    enable: false\n";
      const std::string dmax = test::quantize_demo_export(tmp, fused, "modelopt", "  - roles: [experts]\n    format: nvfp4\n" + rest, "max");
      const std::string dmse = test::quantize_demo_export(
          tmp, fused, "modelopt", "  - roles: [experts]\n    format: nvfp4\n    calibrator: {method: mse, fp8_scale_sweep: true}\n" + rest, "mse");
      const std::string src = tmp.path + (fused ? "/fused" : "/flat");
      const VerifyResult vmax = verify_export(dmax, src), vmse = verify_export(dmse, src);
      for (const auto& p : vmse.problems) UNSCOPED_INFO(p);
      REQUIRE(vmse.problems.empty());
      CHECK(vmse.experts_quantized == vmse.experts_expected);
      REQUIRE(vmax.sites.size() == vmse.sites.size());
      double smax = 0, smse = 0;
      for (size_t i = 0; i < vmse.sites.size(); ++i) {
        if (vmse.sites[i].format.empty()) continue;
        CHECK(vmse.sites[i].sqnr_db >= vmax.sites[i].sqnr_db - 1e-9);  // per site: never worse
        smax += vmax.sites[i].sqnr_db;
        smse += vmse.sites[i].sqnr_db;
      }
      CHECK(smse > smax);
      // Gate and up share weight_scale_2; the stored block scales are the search's, under the
      // pair's shared global amax (the per-expert source names its weights directly).
      auto ck = Checkpoint::open(dmse);
      const std::string p = "model.layers.1.mlp.experts.2.";
      CHECK(at::equal(tensor_view(*ck, p + "gate_proj.weight_scale_2"), tensor_view(*ck, p + "up_proj.weight_scale_2")));
      if (!fused) {
        auto sck = Checkpoint::open(src);
        const at::Tensor g = tensor_view(*sck, p + "gate_proj.weight"), u = tensor_view(*sck, p + "up_proj.weight");
        const at::Tensor ga = at::maximum(own_amax(g), own_amax(u));
        CHECK(byte_diff(tensor_view(*ck, p + "gate_proj.weight_scale"), nvfp4_mse_block_scales(g, ga, sweep()).view(at::kFloat8_e4m3fn)) == "");
        CHECK(byte_diff(tensor_view(*ck, p + "up_proj.weight_scale"), nvfp4_mse_block_scales(u, ga, sweep()).view(at::kFloat8_e4m3fn)) == "");
        CHECK(byte_diff(tensor_view(*ck, p + "gate_proj.weight_scale"), tensor_view(*Checkpoint::open(dmax), p + "gate_proj.weight_scale")) != "");
      }
      const auto rep = nlohmann::json::parse(test::read_file(dmse + "/report.json"));
      CHECK(rep["weight_calibrators"]["mse (fp8 scale sweep)"] == rep["experts"]["total"]);
      int found = 0;
      for (const auto& s : rep["sites"])
        if (s["site"] == "layers.1.experts.2.gate") {
          CHECK(s["calibrator"] == "mse (fp8 scale sweep)");
          ++found;
        }
      CHECK(found == 1);
      CHECK_THAT(test::read_file(dmse + "/report.md"), Catch::Matchers::ContainsSubstring("weight scales: mse (fp8 scale sweep)"));
    }
  }
}

TEST_CASE("mse: FP8 exports, per tensor (gate/up: one joint amax) and per channel, verify", "[mse]") {
  test::TempDir tmp;
  const std::string rest = "  - roles: [attention, dense_mlp, shared_experts, other]\n    enable: false\n";
  for (const char* gran : {"tensor", "channel"}) {
    DYNAMIC_SECTION(gran) {
      const std::string dir = test::quantize_demo_export(
          tmp, false, "compressed-tensors",  // ModelOpt FP8 is W8A8 only, and has no per-channel FP8
          std::string("  - roles: [experts]\n    format: fp8\n    params: {granularity: ") + gran + "}\n    calibrator: mse\n" + rest,
          gran);
      const std::string src = tmp.path + "/flat";
      const VerifyResult v = verify_export(dir, src);
      for (const auto& p : v.problems) UNSCOPED_INFO(p);
      CHECK(v.problems.empty());
      CHECK(v.experts_quantized == v.experts_expected);
      auto ck = Checkpoint::open(dir);
      auto sck = Checkpoint::open(src);
      const std::string p = "model.layers.0.mlp.experts.1.";
      const at::Tensor g = tensor_view(*sck, p + "gate_proj.weight"), u = tensor_view(*sck, p + "up_proj.weight");
      const at::Tensor sg = tensor_view(*ck, p + "gate_proj.weight_scale"), su = tensor_view(*ck, p + "up_proj.weight_scale");
      if (std::string(gran) == "tensor") {
        // One amax for the pair, searched over their joint error; scale = amax / 448.
        const at::Tensor a = fp8_tensor_mse_amax({g, u}, at::maximum(own_amax(g), own_amax(u)), mse()).reshape({});
        CHECK(at::equal(sg, su));
        CHECK(at::equal(sg.reshape({}), a / 448.f));
      } else {
        CHECK(at::equal(sg.flatten(), fp8_channel_mse_amax(g, mse()) / 448.f));
        CHECK(at::equal(su.flatten(), fp8_channel_mse_amax(u, mse()) / 448.f));
      }
    }
  }
}
