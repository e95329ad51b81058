// GPTQ (calib/calibrators/gptq.h, gptq_job.h): against llm-compressor's own quantize_weight on fixed
// weights and Hessians (tests/data/gptq_ref.safetensors, made by tests/python/make_gptq_reference.py),
// the bytes the formats write for GPTQ's weights, the Hessian accumulation, the recipe keys.
#include <ATen/ATen.h>

#include <catch2/catch_approx.hpp>
#include <cmath>
#include <cstdio>

#include "calib/hessian_observer.h"
#include "formats/format.h"
#include "tensor/aten_view.h"
#include "io/safetensors.h"
#include "calib/calibrators/gptq.h"
#include "recipe/recipe.h"
#include "test_util.h"

using namespace moeq;

namespace {

struct Ref {
  std::shared_ptr<SafetensorsFile> f;
  at::Tensor get(const std::string& name) const {
    const TensorInfo* t = f->find(name);
    REQUIRE(t != nullptr);
    return at::from_blob(const_cast<uint8_t*>(f->data(*t)), t->shape, at::TensorOptions().dtype(to_scalar_type(t->dtype))).clone();
  }
};

Ref reference() { return Ref{SafetensorsFile::open(std::string(MOEQ_SOURCE_DIR) + "/tests/data/gptq_ref.safetensors")}; }

// tr((W - Q) H (W - Q)^T) summed over experts, in double: the loss GPTQ minimizes.
double hessian_error(const at::Tensor& w, const at::Tensor& q, const at::Tensor& h) {
  const at::Tensor d = (w.to(at::kDouble) - q.to(at::kDouble));
  return at::bmm(at::bmm(d, h.to(at::kDouble)), d.transpose(1, 2)).diagonal(0, 1, 2).sum().item<double>();
}

}  // namespace

TEST_CASE("gptq: the format's scales of the fixture's weights are the ones the reference used") {
  const Ref r = reference();
  const at::Tensor w = r.get("w");
  const QuantizedTensor n = format_by_name("nvfp4").quantize(w, {});
  CHECK(at::equal(n.parts.at("weight_scale").view(at::kByte), r.get("nvfp4.block_scale")));
  CHECK(at::equal(n.parts.at("weight_scale_2"), r.get("nvfp4.global_scale")));
  FormatParams p;
  p.block_size = 128;
  const QuantizedTensor i = format_by_name("int4").quantize(w, p);
  CHECK(at::equal(i.parts.at("weight_scale"), r.get("int4.scale")));
}

TEST_CASE("gptq: equals llm-compressor's quantize_weight (eager, CPU) on fixed Hessians") {
  const Ref r = reference();
  const at::Tensor w = r.get("w"), h = r.get("h");
  const at::Tensor eff4 = (r.get("nvfp4.block_scale").view(at::kFloat8_e4m3fn).to(at::kFloat) *
                           r.get("nvfp4.global_scale").view({-1, 1, 1})).repeat_interleave(16, -1);
  const at::Tensor effi = r.get("int4.scale").to(at::kFloat).repeat_interleave(128, -1);
  struct Case { const char* name; bool nvfp4; bool act; int64_t block; };
  for (const Case c : {Case{"nvfp4.act0.b128", true, false, 128}, Case{"nvfp4.act0.b64", true, false, 64},
                       Case{"nvfp4.act1.b128", true, true, 128}, Case{"nvfp4.act1.b64", true, true, 64},
                       Case{"int4.act0.b128", false, false, 128}, Case{"int4.act1.b128", false, true, 128},
                       Case{"int4.act1.b64", false, true, 64}}) {
    INFO(c.name);
    const at::Tensor eff = c.nvfp4 ? eff4 : effi;
    const GptqResult g = gptq_quantize(w, h, eff, c.nvfp4 ? GptqGrid::E2M1 : GptqGrid::Int, {c.block, 0.01, c.act}, -8, 7);
    const at::Tensor ref = r.get(c.name);
    CHECK_FALSE(g.identity.any().item<bool>());
    // Same grid points: every element the same multiple of its scale (code), and the values
    // within float32 rounding of the reference (both are code x the same scale).
    const at::Tensor codes = (g.q / eff).round(), ref_codes = (ref / eff).round();
    const int64_t flips = (codes != ref_codes).sum().item<int64_t>();
    const double max_diff = (g.q - ref).abs().max().item<double>();
    std::printf("gptq oracle %-16s code differences %lld of %lld, max |moeq - ref| %.3g\n", c.name,
                static_cast<long long>(flips), static_cast<long long>(ref.numel()), max_diff);
    CHECK(flips == 0);
    CHECK(max_diff <= 1e-7);
    // GPTQ lowers the Hessian-weighted error below plain rounding.
    const at::Tensor plain = gptq_round(w.to(at::kFloat), eff, c.nvfp4 ? GptqGrid::E2M1 : GptqGrid::Int, -8, 7);
    CHECK(hessian_error(w, g.q, h) < 0.8 * hessian_error(w, plain, h));
  }
}

TEST_CASE("gptq: experts in chunks give the bytes of one call (the memory bound changes nothing)") {
  const Ref r = reference();
  const at::Tensor w = r.get("w"), h = r.get("h");
  REQUIRE(w.size(0) >= 2);
  const at::Tensor effi = r.get("int4.scale").to(at::kFloat).repeat_interleave(128, -1);
  const int64_t one = h.size(1) * h.size(2) * 4;
  for (bool act : {false, true}) {
    INFO("act_order " << act);
    const GptqResult whole = gptq_quantize(w, h, effi, GptqGrid::Int, {128, 0.01, act}, -8, 7);
    for (int64_t bytes : {int64_t{1}, one, 2 * one - 1, 64 * one}) {  // 1 expert a chunk (twice), 1, and all at once
      const GptqResult c = gptq_quantize_chunked(w, h, effi, GptqGrid::Int, {128, 0.01, act}, bytes, -8, 7);
      CHECK(at::equal(c.q, whole.q));
      CHECK(at::equal(c.identity, whole.identity));
    }
  }
}

TEST_CASE("gptq: the formats write GPTQ's weights on the fixed scales byte-exactly") {
  const Ref r = reference();
  const at::Tensor w = r.get("w"), h = r.get("h");
  {  // NVFP4: the block scales and global amax of the max path, GPTQ codes.
    const QuantFormat& f = format_by_name("nvfp4");
    const QuantizedTensor q0 = f.quantize(w, {});
    const at::Tensor amax = w.to(at::kFloat).abs().amax({1, 2});
    const at::Tensor eff = (q0.parts.at("weight_scale").to(at::kFloat) * q0.parts.at("weight_scale_2").view({-1, 1, 1}))
                               .repeat_interleave(16, -1);
    const GptqResult g = gptq_quantize(w, h, eff, GptqGrid::E2M1, {}, 0, 0);
    const QuantizedTensor q = f.quantize_with_block_scales(g.q, {}, amax, q0.parts.at("weight_scale").view(at::kByte));
    CHECK(at::equal(q.parts.at("weight_scale").view(at::kByte), q0.parts.at("weight_scale").view(at::kByte)));
    CHECK(at::equal(q.parts.at("weight_scale_2"), q0.parts.at("weight_scale_2")));
    CHECK(at::equal(f.dequantize(q), g.q));
    // The original weights with the same scales are the max path's bytes.
    CHECK(at::equal(f.quantize_with_block_scales(w, {}, amax, q0.parts.at("weight_scale").view(at::kByte)).parts.at("weight"),
                    q0.parts.at("weight")));
  }
  {  // INT4 group 128 symmetric.
    const QuantFormat& f = format_by_name("int4");
    FormatParams p;
    p.block_size = 128;
    const QuantizedTensor q0 = f.quantize(w, p);
    const at::Tensor eff = q0.parts.at("weight_scale").to(at::kFloat).repeat_interleave(128, -1);
    const GptqResult g = gptq_quantize(w, h, eff, GptqGrid::Int, {128, 0.01, true}, -8, 7);
    const QuantizedTensor q = f.quantize_with_block_scales(g.q, p, at::Tensor(), q0.parts.at("weight_scale"));
    CHECK(at::equal(q.parts.at("weight_scale"), q0.parts.at("weight_scale")));
    CHECK(q.parts.at("weight_scale").scalar_type() == at::kBFloat16);
    CHECK(at::equal(f.dequantize(q), g.q));
    CHECK(at::equal(f.quantize_with_block_scales(w, p, at::Tensor(), q0.parts.at("weight_scale")).parts.at("weight_packed"),
                    q0.parts.at("weight_packed")));
    p.symmetric = false;
    REQUIRE_ERROR_MENTIONS(f.quantize_with_block_scales(g.q, p, at::Tensor(), q0.parts.at("weight_scale")), "int4", "symmetric");
  }
}

TEST_CASE("gptq: a Hessian that is not positive definite gets plain rounding and is flagged") {
  const at::Tensor w = at::randn({2, 8, 32}, at::TensorOptions().dtype(at::kFloat)) * 0.1;
  at::Tensor h = at::eye(32).expand({2, 32, 32}).clone();
  h.select(0, 1).fill_(-1.0);  // negative diagonal: not PD after damping
  const at::Tensor eff = at::full({2, 8, 32}, 0.01f);
  const GptqResult g = gptq_quantize(w, h, eff, GptqGrid::Int, {}, -8, 7);
  CHECK_FALSE(g.identity[0].item<bool>());
  CHECK(g.identity[1].item<bool>());
  CHECK(at::equal(g.q.select(0, 1), gptq_round(w.select(0, 1), eff.select(0, 1), GptqGrid::Int, -8, 7)));
  REQUIRE_ERROR_MENTIONS(gptq_quantize(w, h.narrow(1, 0, 16), eff, GptqGrid::Int, {}, -8, 7), "gptq", "[2, 16, 32]");
}

TEST_CASE("gptq: the observer accumulates 2 x x^T over each expert's rows") {
  HessianObserver obs(nullptr);
  const at::Tensor x = at::randn({10, 4}).to(at::kBFloat16);
  const at::Tensor counts = at::tensor({3, 0, 7}, at::kLong);
  const at::Tensor of_row = at::tensor({0, 0, 0, 2, 2, 2, 2, 2, 2, 2}, at::kLong);
  obs.expert_input(1, "gate_up", x, of_row, counts);
  obs.expert_input(1, "gate_up", x.narrow(0, 0, 3), of_row.narrow(0, 0, 3), at::tensor({3, 0, 0}, at::kLong));
  const auto [sum, rows] = obs.sums(1, "gate_up");
  CHECK(rows == std::vector<int64_t>{6, 0, 7});
  const at::Tensor xf = x.to(at::kDouble);
  const at::Tensor a = xf.narrow(0, 0, 3);
  CHECK(at::allclose(sum.select(0, 0).to(at::kDouble), 4 * a.t().mm(a), 1e-5, 1e-6));
  CHECK(at::equal(sum.select(0, 1), at::zeros({4, 4})));
  const at::Tensor c = xf.narrow(0, 3, 7);
  CHECK(at::allclose(sum.select(0, 2).to(at::kDouble), 2 * c.t().mm(c), 1e-5, 1e-6));
  REQUIRE_ERROR_MENTIONS(obs.expert_input(1, "gate_up", x, of_row, at::tensor({3, 0, 6}, at::kLong)), "layer 1", "10");
  REQUIRE_ERROR_MENTIONS(obs.sums(2, "down"), "down", "layer 2");
}

TEST_CASE("gptq: recipe keys") {
  const Recipe r = parse_recipe(
      "recipe: t\nrules:\n  - roles: [experts]\n    format: nvfp4\n"
      "    calibrator: {method: gptq, block_size: 64, dampening: 0.05, act_order: true, min_tokens: 8}\n",
      "t.yaml");
  const WeightCalibrator& c = r.rules[0].calibrator;
  CHECK(c.is_gptq());
  CHECK(c.gptq_block_size == 64);
  CHECK(c.gptq_dampening == Catch::Approx(0.05));
  CHECK(c.gptq_act_order);
  CHECK(c.gptq_min_tokens == 8);
  CHECK(c.describe() == "gptq (block 64, dampening 0.05, act_order true, min_tokens 8)");
  const WeightCalibrator d = parse_recipe("recipe: t\nrules:\n  - roles: [experts]\n    format: int4\n    calibrator: gptq\n", "t.yaml")
                                 .rules[0].calibrator;
  CHECK(d.describe() == "gptq (block 128, dampening 0.01, act_order false, min_tokens 64)");
  REQUIRE_ERROR_MENTIONS(parse_recipe("recipe: t\nrules:\n  - roles: [experts]\n    format: mxfp4\n    calibrator: gptq\n", "t.yaml"), "t.yaml",
                         "gptq", "mxfp4");
  REQUIRE_ERROR_MENTIONS(
      parse_recipe("recipe: t\nrules:\n  - roles: [experts]\n    format: nvfp4\n    calibrator: {method: gptq, dampening: 0}\n", "t.yaml"), "t.yaml",
      "dampening");
  REQUIRE_ERROR_MENTIONS(
      parse_recipe("recipe: t\nrules:\n  - roles: [experts]\n    format: nvfp4\n    calibrator: {method: gptq, step_size: 0.1}\n", "t.yaml"),
      "step_size", "mse");
  REQUIRE_ERROR_MENTIONS(
      parse_recipe("recipe: t\nrules:\n  - roles: [experts]\n    format: nvfp4\n    calibrator: {method: mse, act_order: true}\n", "t.yaml"),
      "act_order", "gptq");
}
