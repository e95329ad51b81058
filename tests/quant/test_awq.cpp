// AWQ (calib/calibrators/awq.h, awq_job.h): the scale search against NVIDIA ModelOpt's own
// awq_lite on one linear (tests/data/awq_ref.safetensors, made by tests/python/make_awq_reference.py),
// the exactness of the down -> up fold, the recipe keys.
#include <ATen/ATen.h>

#include <catch2/catch_approx.hpp>
#include <cmath>
#include <cstdio>

#include "calib/calibrators/awq.h"
#include "calib/calibrators/awq_job.h"
#include "formats/format.h"
#include "io/safetensors.h"
#include "recipe/recipe.h"
#include "tensor/aten_view.h"
#include "test_util.h"

using namespace moeq;

namespace {

at::Tensor ref_tensor(const SafetensorsFile& f, const std::string& name) {
  const TensorInfo* t = f.find(name);
  REQUIRE(t != nullptr);
  return at::from_blob(const_cast<uint8_t*>(f.data(*t)), t->shape, at::TensorOptions().dtype(to_scalar_type(t->dtype))).clone();
}

// ModelOpt's INT4 fake quantization (tensor_quant.py _tensor_quant, num_bits 4, narrow_range
// false) over blocks of `block` inputs, with the block amax of its input (awq_lite's search
// leaves the weight quantizer without a calibrated amax): scale = 7 / amax,
// clamp(round(x * scale), -8, 7) / scale.
at::Tensor modelopt_int4(const at::Tensor& w, int64_t block) {
  const int64_t E = w.size(0), out = w.size(1), in = w.size(2);
  const at::Tensor v = w.reshape({E, out, in / block, block});
  const at::Tensor scale = 7.0f / v.abs().amax(-1, true);
  return ((v * scale).round().clamp(-8, 7) / scale).reshape({E, out, in});
}

}  // namespace

TEST_CASE("awq: the search equals ModelOpt awq_lite's on one linear (INT4, block 32)", "[awq]") {
  const auto f = SafetensorsFile::open(std::string(MOEQ_SOURCE_DIR) + "/tests/data/awq_ref.safetensors");
  const at::Tensor w = ref_tensor(*f, "w").unsqueeze(0), h = ref_tensor(*f, "h").unsqueeze(0);
  const at::Tensor x_mean = ref_tensor(*f, "x_mean").unsqueeze(0);
  const at::Tensor alphas = ref_tensor(*f, "alphas"), loss = ref_tensor(*f, "loss");
  const at::Tensor best_scale = ref_tensor(*f, "best_scale");
  const double best_alpha = ref_tensor(*f, "best_alpha").item<double>();
  // x_mean is ModelOpt's act_scale: mean |x| of the stored activations.
  CHECK(at::allclose(ref_tensor(*f, "x").abs().mean(0), x_mean.squeeze(0), 1e-6, 0));
  const AwqResult r = awq_search(w, h, x_mean, 32, [](const at::Tensor& ws) { return modelopt_int4(ws, 32); }, 0.1);
  REQUIRE(r.alphas.size() == static_cast<size_t>(alphas.numel()));
  for (size_t k = 0; k < r.alphas.size(); ++k) CHECK(r.alphas[k] == alphas[k].item<double>());
  double worst = 0;
  for (size_t k = 0; k < r.alphas.size(); ++k) {
    const double mo = loss[k].item<double>(), mq = r.loss[0][k].item<double>();
    worst = std::max(worst, std::abs(mq - mo) / mo);
  }
  std::printf("awq oracle: best alpha moeq %.3f, ModelOpt %.3f; loss curve max rel diff %.3g\n",
              r.alphas[r.best[0].item<int64_t>()], best_alpha, worst);
  CHECK(worst < 1e-5);  // tr(dW H dW^T) / (2 out) vs ModelOpt's mean squared output error
  CHECK(r.alphas[r.best[0].item<int64_t>()] == best_alpha);
  CHECK(at::allclose(r.scales.squeeze(0), best_scale, 1e-6, 0));
  // The weights ModelOpt leaves on the module are W x best_scale; its input's pre_quant_scale is 1 / s.
  CHECK(at::allclose(ref_tensor(*f, "weight_after"), w.squeeze(0) * best_scale, 1e-6, 0));
  CHECK(at::allclose(ref_tensor(*f, "pre_quant_scale"), 1.0 / best_scale, 1e-6, 0));
  // The search beats s = 1 on this linear (salient channels).
  const at::Tensor d1 = w - modelopt_int4(w, 32);
  const double plain = ((at::bmm(d1, h) * d1).sum() / (2.0 * 32)).item<double>();
  CHECK(r.loss[0][r.best[0].item<int64_t>()].item<double>() < 0.7 * plain);
}

TEST_CASE("awq: the alpha grid is torch.arange(0, 1 + step, step) in float32", "[awq]") {
  CHECK(awq_alphas(0.25) == std::vector<double>{0, 0.25, 0.5, 0.75, 1.0});
  CHECK(awq_alphas(0.1).size() == 11);
  CHECK(awq_alphas(0.1)[3] == static_cast<double>(0.3f));
  CHECK(awq_alphas(0.05).size() == 21);
  REQUIRE_ERROR_MENTIONS(awq_alphas(0), "alpha_step");
  REQUIRE_ERROR_MENTIONS(awq_search(at::zeros({2, 4, 8}), at::zeros({2, 8, 4}), at::zeros({2, 8}), 4,
                                    [](const at::Tensor& t) { return t; }, 0.1),
                         "awq", "[2, 8, 4]");
}

TEST_CASE("awq: folding down's input scales into up's rows leaves the expert's output unchanged", "[awq]") {
  at::manual_seed(3);
  const int64_t H = 32, I = 16;
  const at::Tensor g = at::randn({I, H}), u = at::randn({I, H}), d = at::randn({H, I}), x = at::randn({10, H});
  AwqScales a;
  AwqScales::Layer l;
  l.scales = at::ones({2, I});
  l.scales.select(0, 1).copy_(at::rand({I}) * 4 + 0.1);
  a.layers[0] = l;
  Site up, down, gate;
  up.role = down.role = gate.role = Role::Expert;
  up.layer = down.layer = gate.layer = 0;
  up.expert = down.expert = gate.expert = 1;
  up.proj = "up";
  down.proj = "down";
  gate.proj = "gate";
  auto expert = [&](const at::Tensor& gw, const at::Tensor& uw, const at::Tensor& dw) {
    return at::mm(at::silu(at::mm(x, gw.t())) * at::mm(x, uw.t()), dw.t());
  };
  const at::Tensor ref = expert(g, u, d);
  const at::Tensor folded = expert(awq_fold_weight(a, gate, g), awq_fold_weight(a, up, u), awq_fold_weight(a, down, d));
  CHECK(at::allclose(folded, ref, 1e-5, 1e-5));
  CHECK_FALSE(at::allclose(awq_fold_weight(a, down, d), d));
  CHECK(at::equal(awq_fold_weight(a, gate, g), g));
  // Expert 0's scales are 1: unchanged.
  up.expert = 0;
  CHECK(at::equal(awq_fold_weight(a, up, u), u));
}

TEST_CASE("awq: the scales file round-trips", "[awq]") {
  AwqScales a;
  AwqScales::Layer l;
  l.scales = at::rand({3, 8}) + 0.5;
  a.layers[2] = l;
  AwqScales::Layer g;  // gate_up only
  g.gate_up = at::rand({6}) + 0.5;
  a.layers[4] = g;
  AwqScales::Layer t;  // attention only
  t.attn_in = at::rand({6}) + 0.5;
  t.attn_o = at::rand({8}) + 0.5;
  a.layers[5] = t;
  const moeq::test::TempDir tmp;
  const std::string dir = tmp.path;
  write_awq_scales(a, dir);
  const auto b = read_awq_scales(dir);
  REQUIRE(b);
  CHECK(at::equal(b->layers.at(2).scales, l.scales));
  CHECK(at::equal(b->expert_scales(2, 1), l.scales.select(0, 1)));
  CHECK_FALSE(b->expert_scales(1, 0).defined());
  CHECK(at::equal(b->layers.at(4).gate_up, g.gate_up));
  CHECK_FALSE(b->layers.at(4).scales.defined());
  CHECK_FALSE(b->layers.at(2).gate_up.defined());
  CHECK(at::equal(b->layers.at(5).attn_in, t.attn_in));
  CHECK(at::equal(b->layers.at(5).attn_o, t.attn_o));
  CHECK_FALSE(b->layers.at(5).gate_up.defined());
  CHECK_FALSE(b->layers.at(4).attn_in.defined());
  CHECK(read_awq_scales(dir + "/none") == nullptr);
}

TEST_CASE("awq: recipe keys", "[awq]") {
  const Recipe r = parse_recipe(
      "recipe: t\nrules:\n  - roles: [experts]\n    format: nvfp4\n    calibrator: {method: awq, alpha_step: 0.05, min_tokens: 8}\n",
      "t.yaml");
  const WeightCalibrator& c = r.rules[0].calibrator;
  CHECK(c.is_awq());
  CHECK(c.needs_hessians());
  CHECK(c.awq_alpha_step == Catch::Approx(0.05));
  CHECK(c.gptq_min_tokens == 8);
  CHECK(c.describe() == "awq (alpha_step 0.05, min_tokens 8, inputs gate_up, down, qkv, o by default)");
  CHECK_FALSE(c.awq_inputs_given);
  const WeightCalibrator d = parse_recipe(
      "recipe: t\nrules:\n  - roles: [experts]\n    format: nvfp4\n    calibrator: {method: awq, inputs: [down]}\n", "t.yaml").rules[0].calibrator;
  CHECK(d.awq_down);
  CHECK_FALSE(d.awq_gate_up);
  CHECK_FALSE(d.awq_qkv);
  CHECK(d.awq_inputs_given);
  CHECK(d.describe() == "awq (alpha_step 0.1, min_tokens 64, inputs down)");
  const WeightCalibrator at = parse_recipe(
      "recipe: t\nrules:\n  - roles: [attention]\n    format: int4\n    calibrator: {method: awq, inputs: [qkv, o]}\n", "t.yaml").rules[0].calibrator;
  CHECK(at.awq_qkv);
  CHECK(at.awq_o);
  CHECK_FALSE(at.awq_down);
  // gptq after AWQ's scales: both hold, and the description says so.
  const WeightCalibrator ga = parse_recipe(
      "recipe: t\nrules:\n  - roles: [attention]\n    format: int4\n    calibrator: {method: gptq, act_order: true, awq: {inputs: [o]}}\n",
      "t.yaml").rules[0].calibrator;
  CHECK(ga.is_gptq());
  CHECK(ga.is_awq());
  CHECK(ga.gptq_act_order);
  CHECK(ga.awq_o);
  CHECK_FALSE(ga.awq_qkv);
  CHECK(ga.describe() == "gptq (block 128, dampening 0.01, act_order true, min_tokens 64) after awq (alpha_step 0.1, min_tokens 64, inputs o)");
  CHECK(parse_recipe("recipe: t\nrules:\n  - roles: [attention]\n    format: int4\n    calibrator: {method: gptq, awq: true}\n", "t.yaml")
            .rules[0].calibrator.is_awq());
  CHECK_FALSE(parse_recipe("recipe: t\nrules:\n  - roles: [attention]\n    format: int4\n    calibrator: {method: gptq, awq: false}\n", "t.yaml")
                  .rules[0].calibrator.is_awq());
  REQUIRE_ERROR_MENTIONS(
      parse_recipe("recipe: t\nrules:\n  - roles: [attention]\n    format: int4\n    calibrator: {method: mse, awq: true}\n", "t.yaml"),
      "'awq'", "only applies to method gptq");
  REQUIRE_ERROR_MENTIONS(
      parse_recipe("recipe: t\nrules:\n  - roles: [attention]\n    format: int4\n    calibrator: {method: gptq, awq: {dampening: 1}}\n", "t.yaml"),
      "dampening");
  REQUIRE_ERROR_MENTIONS(
      parse_recipe("recipe: t\nrules:\n  - roles: [experts]\n    format: nvfp4\n    calibrator: {method: awq, inputs: [q]}\n", "t.yaml"),
      "'q'", "gate_up", "qkv");
  CHECK(parse_recipe("recipe: t\nrules:\n  - roles: [experts]\n    format: int4\n    calibrator: awq\n", "t.yaml").rules[0].calibrator.describe() ==
        "awq (alpha_step 0.1, min_tokens 64, inputs gate_up, down, qkv, o by default)");
  REQUIRE_ERROR_MENTIONS(parse_recipe("recipe: t\nrules:\n  - roles: [experts]\n    format: mxfp4\n    calibrator: awq\n", "t.yaml"), "t.yaml",
                         "awq", "mxfp4");
  REQUIRE_ERROR_MENTIONS(
      parse_recipe("recipe: t\nrules:\n  - roles: [experts]\n    format: nvfp4\n    calibrator: {method: awq, alpha_step: 0}\n", "t.yaml"),
      "alpha_step");
  REQUIRE_ERROR_MENTIONS(
      parse_recipe("recipe: t\nrules:\n  - roles: [experts]\n    format: nvfp4\n    calibrator: {method: awq, dampening: 0.1}\n", "t.yaml"),
      "dampening", "awq");
  REQUIRE_ERROR_MENTIONS(
      parse_recipe("recipe: t\nrules:\n  - roles: [experts]\n    format: nvfp4\n    calibrator: {method: gptq, alpha_step: 0.1}\n", "t.yaml"),
      "alpha_step", "awq");
}
