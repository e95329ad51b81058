// NVFP4: byte-for-byte against NVIDIA Model Optimizer 0.47.0 (tests/python/oracle_nvfp4.py),
// kernel == torch-op path, stack == experts alone, errors, SQNR, and CPU == CUDA.
#include <c10/util/Float8_e4m3fn.h>

#include <cmath>
#include <limits>
#include <set>

#include "e2m1_test_util.h"
#include "formats/format.h"
#include "formats/nvfp4/nvfp4.h"
#include "tensor/aten_view.h"
#include "io/checkpoint.h"
#include "test_util.h"

using namespace moeq;
using moeq::test::byte_diff;
using moeq::test::require_same_parts;

namespace {

const QuantFormat& nvfp4() { return format_by_name("nvfp4"); }
QuantizedTensor kernel_q(const at::Tensor& w, const FormatParams& p = {}, const std::optional<at::Tensor>& amax = {}) {
  return nvfp4().quantize(w, p, amax);
}
QuantizedTensor torch_q(const at::Tensor& w, const FormatParams& p = {}, const std::optional<at::Tensor>& amax = {}) {
  return nvfp4().quantize_torch_ops(w, p, amax);
}

// Inputs that exercise every path: dtypes, 2D/3D, zero blocks, tiny and huge values.
std::vector<std::pair<std::string, at::Tensor>> mixed_inputs() {
  std::vector<std::pair<std::string, at::Tensor>> v;
  v.emplace_back("gauss bf16 2D", test::gaussian({64, 256}, 1, at::kBFloat16) * 0.02);
  v.emplace_back("student-t f16 3D", test::student_t3({3, 32, 128}, 2, at::kHalf));
  at::Tensor w = test::gaussian({4, 16, 64}, 3) * at::tensor({1e-38f, 1e-3f, 1.f, 1e30f}).view({4, 1, 1});
  w.index_put_({1, 2}, 0.f);
  w.index_put_({2, 5, at::indexing::Slice(16, 32)}, -0.f);
  v.emplace_back("f32 3D with zero blocks and extreme experts", w);
  v.emplace_back("all zeros bf16", at::zeros({8, 32}, at::kBFloat16));
  return v;
}

}  // namespace

TEST_CASE("nvfp4 matches ModelOpt byte for byte", "[nvfp4][oracle]") {
  // Fixture: tests/python/oracle_nvfp4.py, nvidia-modelopt 0.47.0 NVFP4QTensor (on CPU).
  const auto ck = Checkpoint::open_file(test::oracle_dir() + "/nvfp4.safetensors");
  const auto keys = test::oracle_cases(*ck);
  REQUIRE(keys.size() == 32);  // the script's case list; fewer means a truncated fixture
  std::set<at::ScalarType> dtypes;
  std::set<int64_t> dims;
  int with_amax = 0;
  for (const auto& key : keys) {
    INFO("case " << key);
    const at::Tensor w = tensor_view(*ck, key + ".input");
    dtypes.insert(w.scalar_type());
    dims.insert(w.dim());
    std::optional<at::Tensor> amax;
    if (ck->has(key + ".amax")) {
      amax = tensor_view(*ck, key + ".amax");
      ++with_amax;
    }
    const at::Tensor ref_q = tensor_view(*ck, key + ".weight");
    REQUIRE(ref_q.numel() > 0);
    for (bool torch_ops : {false, true}) {
      INFO((torch_ops ? "torch-op path" : "kernel"));
      const QuantizedTensor q = torch_ops ? torch_q(w, {}, amax) : kernel_q(w, {}, amax);
      REQUIRE(q.parts.size() == 3);
      CHECK(byte_diff(q.parts.at("weight"), ref_q) == "");
      CHECK(byte_diff(q.parts.at("weight_scale"), tensor_view(*ck, key + ".weight_scale")) == "");
      CHECK(byte_diff(q.parts.at("weight_scale_2"), tensor_view(*ck, key + ".weight_scale_2")) == "");
      // ModelOpt's dequantize (fp32), bit for bit.
      CHECK(byte_diff(nvfp4().dequantize(q, at::kFloat), tensor_view(*ck, key + ".deq")) == "");
    }
  }
  CHECK(dtypes == std::set<at::ScalarType>{at::kBFloat16, at::kHalf, at::kFloat});
  CHECK(dims == std::set<int64_t>{2, 3});
  CHECK(with_amax >= 6);
}

TEST_CASE("nvfp4 kernel and torch-op path give the same bytes", "[nvfp4]") {
  for (const auto& [name, w] : mixed_inputs()) {
    INFO(name);
    require_same_parts(kernel_q(w), torch_q(w));
    const int64_t E = w.dim() == 3 ? w.size(0) : 1;
    const at::Tensor own = w.to(at::kFloat).abs().reshape({E, -1}).amax(1);
    for (float f : {0.5f, 3.f, 1e6f}) {
      const at::Tensor amax = w.dim() == 3 ? own * f : (own * f).reshape({});
      require_same_parts(kernel_q(w, {}, amax), torch_q(w, {}, amax));
    }
  }
}

TEST_CASE("nvfp4 stack equals quantizing each expert alone", "[nvfp4]") {
  const at::Tensor w = test::student_t3({5, 16, 96}, 7, at::kBFloat16) * at::tensor({1.f, 1e-3f, 0.f, 40.f, 1.f}).view({5, 1, 1}).to(at::kBFloat16);
  const at::Tensor amax = at::tensor({30.f, 0.1f, 0.f, 900.f, 2.f});
  for (bool given : {false, true}) {
    INFO((given ? "given amax" : "own amax"));
    const QuantizedTensor all = given ? kernel_q(w, {}, amax) : kernel_q(w);
    CHECK(all.parts.at("weight_scale_2").sizes() == at::IntArrayRef{5});
    for (int64_t e = 0; e < 5; ++e) {
      INFO("expert " << e);
      const QuantizedTensor one = given ? kernel_q(w[e], {}, amax[e]) : kernel_q(w[e]);
      CHECK(one.parts.at("weight_scale_2").dim() == 0);
      for (const auto& [part, t] : one.parts) CHECK(byte_diff(all.parts.at(part)[e], t) == "");
    }
  }
}

TEST_CASE("nvfp4 rejects NaN and Inf", "[nvfp4]") {
  for (auto dt : {at::kBFloat16, at::kHalf, at::kFloat})
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), INFINITY, -INFINITY}) {
      at::Tensor w = at::ones({3, 16, 32}, dt);
      w.index_put_({2, 15, 31}, bad);  // the very last element
      INFO(c10::toString(dt) << " " << bad);
      REQUIRE_ERROR_MENTIONS(kernel_q(w), "nvfp4", "NaN or Inf");
      REQUIRE_ERROR_MENTIONS(kernel_q(w, {}, at::full({3}, 2.f)), "nvfp4", "NaN or Inf");
      REQUIRE_ERROR_MENTIONS(torch_q(w), "nvfp4", "NaN or Inf");
      REQUIRE_ERROR_MENTIONS(kernel_q(w[2]), "nvfp4", "NaN or Inf");
    }
}

TEST_CASE("nvfp4 rejects bad parameters, shapes and amax", "[nvfp4]") {
  const at::Tensor w = at::ones({4, 64});
  FormatParams p;
  p.block_size = 32;
  REQUIRE_ERROR_MENTIONS(kernel_q(w, p), "nvfp4", "block size", "16", "32");
  REQUIRE_ERROR_MENTIONS(torch_q(w, p), "nvfp4", "block size");
  REQUIRE_ERROR_MENTIONS(nvfp4().validate({4, 40}, {}), "nvfp4", "40", "not divisible");
  REQUIRE_ERROR_MENTIONS(kernel_q(at::ones({4, 40})), "nvfp4", "not divisible");
  REQUIRE_ERROR_MENTIONS(kernel_q(at::ones({64})), "nvfp4", "2D");
  REQUIRE_ERROR_MENTIONS(kernel_q(at::ones({4, 64}, at::kInt)), "nvfp4", "bf16, f16 or f32");
  REQUIRE_ERROR_MENTIONS(kernel_q(at::ones({2, 4, 64}), {}, at::ones({3})), "nvfp4", "amax", "[2]");
  REQUIRE_ERROR_MENTIONS(kernel_q(w, {}, at::ones({2})), "nvfp4", "amax", "[]");
  REQUIRE_ERROR_MENTIONS(kernel_q(w, {}, at::tensor(-1.f)), "nvfp4", "non-negative");
  REQUIRE_ERROR_MENTIONS(torch_q(w, {}, at::tensor(NAN)), "nvfp4", "finite");
  p.block_size = 16;
  CHECK_NOTHROW(kernel_q(w, p));
}

TEST_CASE("nvfp4 round-trip SQNR", "[nvfp4]") {
  // Measured on bf16 [256, 1024] (seeds 11/12): Gaussian 20.45 dB, Student-t(3) 21.05 dB.
  // ModelOpt on five other seeds: Gaussian 20.42..20.45, Student-t 20.79..21.56 (its energy
  // sits in the tails, which block scaling keeps well). A wrong tie rule, an unrounded or
  // misplaced scale moves these by more than the margins.
  const at::Tensor g = test::gaussian({256, 1024}, 11, at::kBFloat16);
  const at::Tensor t = test::student_t3({256, 1024}, 12, at::kBFloat16);
  const double sg = test::sqnr_db(g, nvfp4().dequantize(kernel_q(g)));
  const double st = test::sqnr_db(t, nvfp4().dequantize(kernel_q(t)));
  WARN("nvfp4 SQNR: Gaussian " << sg << " dB, Student-t(3) " << st << " dB");
  CHECK(sg > 20.3);
  CHECK(sg < 20.6);
  CHECK(st > 20.6);
  CHECK(st < 21.6);
}

TEST_CASE("nvfp4 dequantize and bits per weight", "[nvfp4]") {
  const at::Tensor w = test::gaussian({2, 8, 32}, 5);
  const QuantizedTensor q = kernel_q(w);
  CHECK(q.parts.at("weight").sizes() == at::IntArrayRef{2, 8, 16});
  CHECK(q.parts.at("weight").scalar_type() == at::kByte);
  CHECK(q.parts.at("weight_scale").sizes() == at::IntArrayRef{2, 8, 2});
  CHECK(q.parts.at("weight_scale").scalar_type() == at::kFloat8_e4m3fn);
  CHECK(q.parts.at("weight_scale_2").scalar_type() == at::kFloat);
  const at::Tensor d = nvfp4().dequantize(q, at::kBFloat16);
  CHECK(d.sizes() == w.sizes());
  CHECK(d.scalar_type() == at::kBFloat16);
  // The block amax element maps to code 6.0 (or near it) times the scale: within 1/8 of it.
  CHECK(at::allclose(d.to(at::kFloat).abs().amax(), w.abs().amax(), 0.13));
  CHECK(nvfp4().bits_per_weight({4096, 4096}, {}) == 4.5 + 32.0 / (4096.0 * 4096.0));
  CHECK(nvfp4().bits_per_weight({8, 4096, 1024}, {}) == 4.5 + 32.0 / (4096.0 * 1024.0));
}

TEST_CASE("fp8 e4m3 scale encoding agrees with c10 (torch's cast)", "[nvfp4]") {
  // Every fp8 value and each midpoint between neighbours, +-3 float steps, plus a stride
  // sweep over [2^-9, 448]: the encoder must round like c10::Float8_e4m3fn.
  std::vector<float> probes;
  for (int c = 1; c <= 0x7E; ++c) {
    const float v = fp8_e4m3_decode(static_cast<uint8_t>(c));
    CHECK(v == static_cast<float>(c10::Float8_e4m3fn(static_cast<uint8_t>(c), c10::Float8_e4m3fn::from_bits())));
    const float mid = c < 0x7E ? 0.5f * (v + fp8_e4m3_decode(static_cast<uint8_t>(c + 1))) : v;
    for (float center : {v, mid}) {
      float x = center;
      for (int k = 0; k < 3; ++k) x = std::nextafter(x, 0.f);
      for (int k = 0; k < 7; ++k, x = std::nextafter(x, 1e9f)) probes.push_back(x);
    }
  }
  for (uint32_t u = float_bits(0.001953125f); u <= float_bits(448.f); u += 4099) probes.push_back(bits_float(u));
  int64_t mismatches = 0, checked = 0;
  for (float x : probes) {
    if (x < 0.001953125f || x > 448.f) continue;
    ++checked;
    mismatches += fp8_e4m3_encode_scale(x) != c10::Float8_e4m3fn(x).x;
  }
  CHECK(checked > 30000);
  CHECK(mismatches == 0);
}

TEST_CASE("nvfp4 on CUDA gives the CPU bytes", "[nvfp4][cuda]") {
  if (!at::hasCUDA()) SKIP("no CUDA device");
  auto inputs = mixed_inputs();
  // Misaligned data pointer (offset 8 bf16 elements): the kernel's scalar-load path.
  const at::Tensor big = test::gaussian({1, 8 + 32 * 64}, 9, at::kBFloat16).cuda();
  const at::Tensor misaligned = big.narrow(1, 8, 32 * 64).view({32, 64});
  for (auto& [name, w] : inputs) {
    INFO(name);
    const at::Tensor wc = w.cuda();
    const QuantizedTensor cpu = kernel_q(w);
    require_same_parts(cpu, kernel_q(wc));
    require_same_parts(cpu, torch_q(wc));
    const int64_t E = w.dim() == 3 ? w.size(0) : 1;
    at::Tensor amax = w.to(at::kFloat).abs().reshape({E, -1}).amax(1).mul(3.f);
    if (w.dim() == 2) amax = amax.reshape({});
    require_same_parts(kernel_q(w, {}, amax), kernel_q(wc, {}, amax.cuda()));
    CHECK(byte_diff(nvfp4().dequantize(cpu), nvfp4().dequantize(kernel_q(wc))) == "");
  }
  require_same_parts(kernel_q(misaligned.cpu()), kernel_q(misaligned));
  at::Tensor bad = at::ones({2, 16, 32}, at::kHalf).cuda();
  bad.index_put_({1, 3, 7}, NAN);
  REQUIRE_ERROR_MENTIONS(kernel_q(bad), "nvfp4", "NaN or Inf");
  REQUIRE_ERROR_MENTIONS(kernel_q(bad, {}, at::ones({2})), "nvfp4", "NaN or Inf");
}

TEST_CASE("nvfp4 on CUDA matches ModelOpt byte for byte", "[nvfp4][oracle][cuda]") {
  if (!at::hasCUDA()) SKIP("no CUDA device");
  const auto ck = Checkpoint::open_file(test::oracle_dir() + "/nvfp4.safetensors");
  const auto keys = test::oracle_cases(*ck);
  REQUIRE(keys.size() == 32);
  for (const auto& key : keys) {
    INFO("case " << key);
    const at::Tensor w = tensor_view(*ck, key + ".input").cuda();
    std::optional<at::Tensor> amax;
    if (ck->has(key + ".amax")) amax = tensor_view(*ck, key + ".amax").cuda();
    for (bool torch_ops : {false, true}) {
      INFO((torch_ops ? "torch-op path" : "kernel"));
      const QuantizedTensor q = torch_ops ? torch_q(w, {}, amax) : kernel_q(w, {}, amax);
      CHECK(q.parts.at("weight").is_cuda());
      for (const char* part : {"weight", "weight_scale", "weight_scale_2"})
        CHECK(byte_diff(q.parts.at(part), tensor_view(*ck, key + "." + part)) == "");
      CHECK(byte_diff(nvfp4().dequantize(q, at::kFloat), tensor_view(*ck, key + ".deq")) == "");
    }
  }
}
