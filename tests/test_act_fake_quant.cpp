// Activation fake quantization of compare --calib (compare/act_fake_quant.h): hand-derived
// values of the deployed kernels' math (vLLM scaled_fp8_quant / scaled_fp4_quant): ties,
// saturation, zero and underflowing blocks, per-row scales.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <vector>

#include "app/compare/act_fake_quant.h"
#include "test_util.h"

using namespace moeq;

namespace {

at::Tensor f32(const std::vector<float>& v) { return at::tensor(v, at::kFloat); }
at::Tensor scalar(float s) { return at::scalar_tensor(s, at::kFloat); }

void check_equal(const at::Tensor& got, const std::vector<float>& want) {
  const at::Tensor g = got.to(at::kFloat).reshape(-1).contiguous();
  REQUIRE(g.numel() == static_cast<int64_t>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i);
    CHECK(g[static_cast<int64_t>(i)].item<float>() == want[i]);
  }
}

// One 16-element block: the given values, then zeros.
std::vector<float> block(std::vector<float> v) {
  v.resize(16, 0.0f);
  return v;
}

}  // namespace

TEST_CASE("activation fake quant: E2M1 rounds half to even and saturates at 6", "[compare]") {
  check_equal(e2m1_round(f32({0.25f, 0.26f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 5.01f, 7.0f, 1e30f, -0.75f, -5.0f, 0.0f})),
              {0.0f, 0.5f, 1.0f, 1.0f, 2.0f, 2.0f, 4.0f, 4.0f, 6.0f, 6.0f, 6.0f, -1.0f, -4.0f, 0.0f});
}

TEST_CASE("activation fake quant: FP8 W8A8 static per-tensor scale", "[compare]") {
  // input_scale 0.5: x / 0.5 = 2x exactly. E4M3 steps: 1 in [8, 16), 2^-9 below 2^-6 (subnormal).
  const at::Tensor x = f32({1.0f, 4.25f, 4.75f, 300.0f, -300.0f, 0.0f, 3 * std::ldexp(1.0f, -11), std::ldexp(1.0f, -12)});
  check_equal(fp8_input_fake_quant(x.view({1, -1}), scalar(0.5f)),
              {1.0f,                    // 2 -> 2
               4.0f,                    // 8.5: tie -> 8 (even)
               5.0f,                    // 9.5: tie -> 10 (even)
               224.0f, -224.0f,         // 600 saturates at 448
               0.0f,
               std::ldexp(1.0f, -9),    // 1.5 * 2^-9: tie -> 2 * 2^-9
               0.0f});                  // 0.25 * 2^-9 -> 0
  // One scale per row: 1 / 3 = 0.33333334f; 0.33333334 -> 11 * 2^-5 = 0.34375 (step 2^-5 in [0.25, 0.5)); x 3.
  check_equal(fp8_input_fake_quant(f32({1.0f, 1.0f}).view({2, 1}), f32({0.5f, 3.0f})), {1.0f, 1.03125f});
  // The dtype of x is kept; [.., in] with a scalar scale.
  const at::Tensor b = fp8_input_fake_quant(x.view({2, 2, 2}).to(at::kBFloat16), scalar(0.5f));
  CHECK(b.scalar_type() == at::kBFloat16);
  CHECK(b.sizes() == at::IntArrayRef({2, 2, 2}));
  REQUIRE_ERROR_MENTIONS(fp8_input_fake_quant(f32({1.0f, 1.0f}).view({2, 1}), f32({0.5f, 1.0f, 2.0f})), "one per row");
}

TEST_CASE("activation fake quant: NVFP4 W4A4 global scale and dynamic E4M3 block scales", "[compare]") {
  // input_scale 0.25: gs = 4. block_amax * (1/6) is exact (rounded) for the amaxes below.
  std::vector<float> x, want;
  auto add = [&](const std::vector<float>& in, const std::vector<float>& out) {
    const auto a = block(in), b = block(out);
    x.insert(x.end(), a.begin(), a.end());
    want.insert(want.end(), b.begin(), b.end());
  };
  // amax 6: sf = 4 * 1 = 4, dequantized block scale 4 * 0.25 = 1: E2M1 itself, ties to even.
  add({6, 3, 1.25f, 0.25f, -0.75f, 5, 2.5f, 1.75f, 0.5f, -6}, {6, 3, 1, 0, -1, 4, 2, 2, 0.5f, -6});
  // All zero: sf = 0, the block stays 0.
  add({}, {});
  // amax 1344 = twice the calibrated range: sf = 896 saturates at 448 (scale 112), values clip at 6 * 112.
  add({1344, -100, 56, 28}, {672, -112, 56, 0});
  // amax 14.25: sf = 9.5, a tie in E4M3 -> 10 (scale 2.5): 14.25 / 2.5 = 5.7 -> 6; -3 -> -1.2 -> -1; 1 -> 0.4 -> 0.5.
  add({14.25f, -3, 1}, {15, -2.5f, 1.25f});
  // amax 6 * 2^-12: sf = 2^-10, half the smallest E4M3 subnormal: ties to 0, the block becomes 0.
  add({6 * std::ldexp(1.0f, -12), std::ldexp(1.0f, -12)}, {0, 0});
  // amax 6 * 2^-11: sf = 2^-9, the smallest subnormal: kept exactly.
  add({6 * std::ldexp(1.0f, -11), std::ldexp(1.0f, -11)}, {6 * std::ldexp(1.0f, -11), std::ldexp(1.0f, -11)});
  const int64_t n = static_cast<int64_t>(x.size());
  check_equal(nvfp4_input_fake_quant(f32(x).view({1, n}), scalar(0.25f)), want);
  // The same blocks as rows of one block each, one scale per row: identical; a row with scale 0.5
  // (gs = 2) gets its own result (amax 6: sf = 2, scale 1: E2M1 itself again).
  const at::Tensor rows = f32(x).view({n / 16, 16});
  check_equal(nvfp4_input_fake_quant(rows, at::full({n / 16}, 0.25f, at::kFloat)), want);
  at::Tensor s = at::full({n / 16}, 0.25f, at::kFloat);
  s[0] = 0.5f;
  check_equal(nvfp4_input_fake_quant(rows, s).narrow(0, 0, 1), block({6, 3, 1, 0, -1, 4, 2, 2, 0.5f, -6}));
  // bf16 in, bf16 out; the last dimension must hold whole blocks.
  CHECK(nvfp4_input_fake_quant(rows.to(at::kBFloat16), scalar(0.25f)).scalar_type() == at::kBFloat16);
  REQUIRE_ERROR_MENTIONS(nvfp4_input_fake_quant(at::ones({2, 24}), scalar(1.0f)), "24 features", "16-element");
}

TEST_CASE("activation fake quant: CUDA gives the CPU's values bit for bit", "[compare][cuda]") {
  if (!at::hasCUDA()) SKIP("no CUDA device");
  at::Tensor x = at::randn({64, 256}, at::detail::createCPUGenerator(3)) * 5;
  x.narrow(1, 0, 16).zero_();              // a zero block in every row
  x.narrow(1, 16, 16).mul_(1e-6);          // blocks whose scale underflows
  x.narrow(1, 32, 16).mul_(100);           // blocks beyond the calibrated range
  const at::Tensor rows = at::rand({64}, at::detail::createCPUGenerator(4)) * 0.01 + 1e-3;
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    const at::Tensor xd = x.to(dtype);
    const at::Tensor one = at::scalar_tensor(0.004f, at::kFloat);
    CHECK(at::equal(nvfp4_input_fake_quant(xd, rows), nvfp4_input_fake_quant(xd.cuda(), rows.cuda()).cpu()));
    CHECK(at::equal(nvfp4_input_fake_quant(xd, one), nvfp4_input_fake_quant(xd.cuda(), one.cuda()).cpu()));
    CHECK(at::equal(fp8_input_fake_quant(xd, rows), fp8_input_fake_quant(xd.cuda(), rows.cuda()).cpu()));
    CHECK(at::equal(fp8_input_fake_quant(xd, one), fp8_input_fake_quant(xd.cuda(), one.cuda()).cpu()));
  }
}
