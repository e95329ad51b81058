// fp8 format: byte for byte against NVIDIA ModelOpt 0.47.0's FP8 export math
// (tests/python/oracle_fp8.py), kernel == torch-op path, errors, SQNR, CPU == CUDA.
#include <ATen/ATen.h>

#include <catch2/catch_approx.hpp>
#include <cmath>
#include <cstring>

#include "formats/format.h"
#include "tensor/aten_view.h"
#include "io/checkpoint.h"
#include "test_util.h"

using namespace moeq;

namespace {

bool same_bytes(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const at::Tensor x = a.cpu().contiguous(), y = b.cpu().contiguous();
  return std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

void require_same_parts(const QuantizedTensor& a, const QuantizedTensor& b) {
  REQUIRE(a.parts.size() == b.parts.size());
  for (const auto& [name, t] : a.parts) {
    INFO("part " << name);
    REQUIRE(b.parts.count(name));
    CHECK(same_bytes(t, b.parts.at(name)));
  }
}

FormatParams gran(const char* g) {
  FormatParams p;
  p.granularity = g;
  return p;
}

double sqnr_db(const at::Tensor& w, const at::Tensor& deq) {
  const at::Tensor x = w.to(at::kDouble), d = deq.to(at::kDouble);
  return 10.0 * std::log10(x.pow(2).sum().item<double>() / (x - d).pow(2).sum().item<double>());
}

// Random, zero rows, negative zeros, fp8 midpoints (scale 1), subnormal codes, tiny amax.
std::vector<at::Tensor> adversarial(at::ScalarType t) {
  at::manual_seed(3);
  at::Tensor a = at::randn({16, 256});
  a.slice(0, 0, 2).zero_();
  a[2].fill_(-0.0);
  // Every midpoint between neighbouring e4m3 values, both signs; amax 448 makes the scale 1.
  const at::Tensor v = at::arange(127, at::kByte).view(at::kFloat8_e4m3fn).to(at::kFloat);
  const at::Tensor mids = (v.slice(0, 0, 126) + v.slice(0, 1, 127)) / 2;
  a[3] = at::cat({mids, -mids, at::zeros({4})});
  a[3][255] = 448;
  a[4] = at::randn({256}) * 1e-3;
  a[4][0] = 448;
  a[5] = at::randn({256}) * 1e-40;  // amax below FLT_MIN (f32, bf16)
  return {(at::randn({3, 8, 512}) * 0.02).to(t), a.to(t)};
}

}  // namespace

TEST_CASE("fp8: byte for byte against ModelOpt's export math, kernel and torch-op paths", "[fp8][oracle]") {
  const auto ckpt = Checkpoint::open_file(test::oracle_dir() + "/fp8.safetensors");
  const int64_t n = tensor_view(*ckpt, "num_cases")[0].item<int64_t>();
  REQUIRE(n == 54);  // oracle_fp8.py: 3 dtypes x (8 inputs x 2 granularities + 2 with a given amax)
  const QuantFormat& f = format_by_name("fp8");
  int given = 0, stacks = 0, channel = 0;
  for (int64_t i = 0; i < n; ++i) {
    char key[8];
    std::snprintf(key, sizeof key, "c%03d", static_cast<int>(i));
    const std::string k = key;
    const at::Tensor w = tensor_view(*ckpt, k + ".w");
    const at::Tensor pr = tensor_view(*ckpt, k + ".params");
    const FormatParams p = gran(pr[0].item<int64_t>() ? "channel" : "tensor");
    std::optional<at::Tensor> amax;
    if (pr[1].item<int64_t>()) amax = tensor_view(*ckpt, k + ".amax");
    INFO("case " << k << ": " << p.granularity << (amax ? " given amax " : " ") << w.scalar_type() << " " << w.sizes());
    const QuantizedTensor q = f.quantize(w, p, amax);
    REQUIRE(q.parts.size() == 2);
    const at::Tensor codes = tensor_view(*ckpt, k + ".weight"), scale = tensor_view(*ckpt, k + ".weight_scale");
    CHECK(same_bytes(q.parts.at("weight"), codes));
    CHECK(same_bytes(q.parts.at("weight_scale"), scale));
    const at::Tensor s = p.granularity == "tensor" && w.dim() == 3 ? scale.view({-1, 1, 1}) : scale;
    CHECK(same_bytes(f.dequantize(q), codes.to(at::kFloat) * s));
    require_same_parts(q, f.quantize_torch_ops(w, p, amax));
    given += amax.has_value();
    channel += p.granularity == "channel";
    if (w.dim() == 3) {  // a stack equals its experts quantized alone
      ++stacks;
      for (int64_t e = 0; e < w.size(0); ++e) {
        const QuantizedTensor qe = f.quantize(w[e], p);
        for (const auto& [name, t] : qe.parts) CHECK(same_bytes(q.parts.at(name)[e], t));
      }
    }
  }
  CHECK(given == 6);
  CHECK(channel == 24);
  CHECK(stacks == 6);
}

TEST_CASE("fp8: NaN or Inf in the weight is an error, also with a given amax", "[fp8]") {
  const QuantFormat& f = format_by_name("fp8");
  for (double bad : {std::nan(""), double(INFINITY), -double(INFINITY)})
    for (auto t : {at::kBFloat16, at::kHalf, at::kFloat}) {
      at::Tensor w = at::randn({2, 8, 64}).to(t);
      w[1][5][30] = bad;
      for (const char* g : {"tensor", "channel"}) {
        REQUIRE_ERROR_MENTIONS(f.quantize(w, gran(g)), "fp8", "NaN or Inf");
        REQUIRE_ERROR_MENTIONS(f.quantize_torch_ops(w, gran(g)), "fp8", "NaN or Inf");
      }
      const at::Tensor amax = at::ones({2});
      REQUIRE_ERROR_MENTIONS(f.quantize(w, gran("tensor"), amax), "fp8", "NaN or Inf");
      REQUIRE_ERROR_MENTIONS(f.quantize_torch_ops(w, gran("tensor"), amax), "fp8", "NaN or Inf");
    }
}

TEST_CASE("fp8: bad parameters and amax values are clear errors on both paths", "[fp8]") {
  const QuantFormat& f = format_by_name("fp8");
  const at::Tensor w = at::randn({2, 8, 64});
  for (auto path : {&QuantFormat::quantize, &QuantFormat::quantize_torch_ops}) {
    REQUIRE_ERROR_MENTIONS((f.*path)(w, gran("row"), std::nullopt), "fp8", "granularity", "row");
    REQUIRE_ERROR_MENTIONS((f.*path)(w, gran("channel"), at::ones({2})), "fp8", "2 values", "one per row (16)");
    // A given per-row amax (the MSE search's) equal to the rows' own gives the default bytes.
    require_same_parts((f.*path)(w, gran("channel"), w.abs().amax({2})), (f.*path)(w, gran("channel"), std::nullopt));
    const QuantizedTensor half = (f.*path)(w, gran("channel"), w.abs().amax({2}) / 2);
    CHECK(at::equal(half.parts.at("weight_scale").flatten(), (w.abs().amax({2}) / 2 / 448).flatten()));
    REQUIRE_ERROR_MENTIONS((f.*path)(w, gran("tensor"), at::ones({3})), "fp8", "3 values", "2");
    REQUIRE_ERROR_MENTIONS((f.*path)(w, gran("tensor"), -at::ones({2})), "fp8", "non-negative");
    REQUIRE_ERROR_MENTIONS((f.*path)(w, gran("tensor"), at::full({2}, NAN)), "fp8", "finite");
    REQUIRE_ERROR_MENTIONS((f.*path)(at::randn({64}), gran("tensor"), std::nullopt), "fp8", "2D");
  }
  CHECK(f.bits_per_weight({8, 64}, gran("channel")) == Catch::Approx(8.5));
  CHECK(f.bits_per_weight({8, 64}, gran("tensor")) == Catch::Approx(8 + 32.0 / 512));
}

TEST_CASE("fp8: kernel == torch-op path on adversarial inputs and given amax", "[fp8]") {
  const QuantFormat& f = format_by_name("fp8");
  for (auto t : {at::kBFloat16, at::kHalf, at::kFloat})
    for (const at::Tensor& w : adversarial(t)) {
      for (const char* g : {"tensor", "channel"}) {
        INFO(t << " " << w.sizes() << " " << g);
        require_same_parts(f.quantize(w, gran(g)), f.quantize_torch_ops(w, gran(g)));
      }
      const int64_t e = w.dim() == 3 ? w.size(0) : 1;
      for (double a : {0.0, 1e-44, 0.05, 1e3}) {  // zero -> scale 1; subnormal -> FLT_MIN / 448
        const at::Tensor amax = at::full({e}, a);
        const QuantizedTensor q = f.quantize(w, gran("tensor"), amax);
        require_same_parts(q, f.quantize_torch_ops(w, gran("tensor"), amax));
        CHECK(q.parts.at("weight").to(at::kFloat).abs().max().item<float>() <= 448.f);
        CHECK(q.parts.at("weight_scale").min().item<float>() > 0.f);
      }
    }
}

TEST_CASE("fp8: round-trip SQNR on Gaussian and Student-t weights", "[fp8]") {
  at::manual_seed(0);
  const at::Tensor gauss = at::randn({512, 1024});
  const at::Tensor chi2 = at::randn({3, 512, 1024}).pow(2).sum(0);
  const at::Tensor student = at::randn({512, 1024}) / (chi2 / 3).sqrt();  // Student-t, df = 3
  // Measured with this seed (f32 weights). E4M3 keeps 3 mantissa bits: the error is uniform
  // within half a code spacing, 2^-4 of the value's binade, which gives ~31.5 dB whatever
  // the distribution while values stay in the normal codes (heavy tails put more energy in
  // values whose relative error is the same, so Student-t is not lower). The scale hardly
  // matters (a float format is scale-invariant), so this catches a wrong rounding
  // (truncation costs ~6 dB) or clamping (a scale below amax/448), not the scale's value.
  const QuantFormat& f = format_by_name("fp8");
  struct Expect { const char* gran; double gauss, student; };
  for (const Expect& x : {Expect{"tensor", 31.55, 31.66}, Expect{"channel", 31.57, 32.40}}) {
    const double g = sqnr_db(gauss, f.dequantize(f.quantize(gauss, gran(x.gran))));
    const double s = sqnr_db(student, f.dequantize(f.quantize(student, gran(x.gran))));
    INFO(x.gran << ": Gaussian " << g << " dB, Student-t " << s << " dB");
    CHECK(g == Catch::Approx(x.gauss).margin(0.2));
    CHECK(s == Catch::Approx(x.student).margin(0.2));
  }
}

TEST_CASE("fp8: CUDA kernel gives the CPU bytes", "[fp8][cuda]") {
  if (!at::hasCUDA()) SKIP("no CUDA device");
  const QuantFormat& f = format_by_name("fp8");
  for (auto t : {at::kBFloat16, at::kHalf, at::kFloat})
    for (const at::Tensor& w : adversarial(t)) {
      for (const char* g : {"tensor", "channel"}) {
        INFO(t << " " << w.sizes() << " " << g);
        const QuantizedTensor cpu = f.quantize(w, gran(g)), gpu = f.quantize(w.cuda(), gran(g));
        for (const auto& [part, tensor] : gpu.parts) CHECK(tensor.is_cuda());
        require_same_parts(cpu, gpu);
        CHECK(same_bytes(f.dequantize(cpu), f.dequantize(gpu)));
      }
      const int64_t e = w.dim() == 3 ? w.size(0) : 1;
      for (double a : {0.0, 1e-44, 0.05}) {
        const at::Tensor amax = at::full({e}, a);
        require_same_parts(f.quantize(w, gran("tensor"), amax), f.quantize(w.cuda(), gran("tensor"), amax.cuda()));
      }
    }
  at::Tensor bad = at::randn({2, 8, 64}, at::kCUDA);
  bad[1][3][7] = std::nan("");
  for (const char* g : {"tensor", "channel"}) REQUIRE_ERROR_MENTIONS(f.quantize(bad, gran(g)), "fp8", "NaN or Inf");
  REQUIRE_ERROR_MENTIONS(f.quantize(bad, gran("tensor"), at::ones({2})), "fp8", "NaN or Inf");
}
