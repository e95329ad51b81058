// int4 / int8 group-wise formats: byte-for-byte against compressed-tensors 0.20.0
// (tests/python/oracle_intq.py), kernel == torch-op path, errors, SQNR, CPU == CUDA.
#include <ATen/ATen.h>

#include <catch2/catch_approx.hpp>
#include <cmath>
#include <cstring>
#include <set>

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

// Every part of a equals the same part of b, byte for byte, and they have the same parts.
void require_same_parts(const QuantizedTensor& a, const QuantizedTensor& b) {
  REQUIRE(a.parts.size() == b.parts.size());
  for (const auto& [name, t] : a.parts) {
    INFO("part " << name);
    REQUIRE(b.parts.count(name));
    CHECK(same_bytes(t, b.parts.at(name)));
  }
}

FormatParams params(int64_t group, bool symmetric) {
  FormatParams p;
  p.block_size = group;
  p.symmetric = symmetric;
  return p;
}

double sqnr_db(const at::Tensor& w, const at::Tensor& deq) {
  const at::Tensor x = w.to(at::kDouble), d = deq.to(at::kDouble);
  return 10.0 * std::log10(x.pow(2).sum().item<double>() / (x - d).pow(2).sum().item<double>());
}

// Inputs that stress the group math: zeros, tiny values, constant groups, ties, outliers.
std::vector<at::Tensor> adversarial(at::ScalarType t) {
  at::manual_seed(7);
  std::vector<at::Tensor> v;
  v.push_back(at::randn({4, 17, 512}) * 0.02);
  at::Tensor a = at::randn({24, 256});
  a.slice(0, 0, 2).zero_();
  a[2].fill_(-0.0);
  a[3] = a[3] * 1e-39;  // f32 denormals (bf16 too); f16 flushes them to 0
  a[4].fill_(3.0);
  a[5].fill_(-1e-3);
  a[6] = at::arange(256).remainder(16).sub(7.5);  // k + 0.5 with scale 1
  a[7][9] = 1e4;
  a[8] = a[8].abs() + 1;
  a[9] = -(a[9].abs() + 1);
  v.push_back(a);
  for (auto& x : v) x = x.to(t);
  return v;
}

// Calls fn(format, weight, params) for each adversarial input, dtype, group size and mode
// that the format accepts (the CPU tests and the CUDA test walk the same cases).
template <class Fn>
void for_each_case(Fn fn) {
  for (const char* name : {"int4", "int8"}) {
    const QuantFormat& f = format_by_name(name);
    for (auto t : {at::kBFloat16, at::kHalf, at::kFloat})
      for (const at::Tensor& w : adversarial(t))
        for (int64_t g : {0, 8, 32, 256, 512})  // 512: past the CUDA kernel's register cache
          for (bool sym : {true, false}) {
            const int64_t group = g ? g : 128;
            if (w.size(-1) % group != 0 || group % (32 / (name[3] == '4' ? 4 : 8)) != 0) continue;
            INFO(name << " " << t << " " << w.sizes() << " group " << group << (sym ? " sym" : " asym"));
            fn(f, w, params(g, sym));
          }
  }
}

}  // namespace

TEST_CASE("intq: byte for byte against compressed-tensors, kernel and torch-op paths", "[intq][oracle]") {
  const auto ckpt = Checkpoint::open_file(test::oracle_dir() + "/intq.safetensors");
  const int64_t n = tensor_view(*ckpt, "num_cases")[0].item<int64_t>();
  REQUIRE(n == 120);  // oracle_intq.py: 2 bit widths x 2 modes x 3 dtypes x 10 cases
  std::set<std::string> seen;
  int stacks = 0;
  for (int64_t i = 0; i < n; ++i) {
    char key[8];
    std::snprintf(key, sizeof key, "c%03d", static_cast<int>(i));
    const std::string k = key;
    const at::Tensor w = tensor_view(*ckpt, k + ".w");
    const at::Tensor pr = tensor_view(*ckpt, k + ".params");
    const int bits = static_cast<int>(pr[0].item<int64_t>());
    const bool sym = pr[1].item<int64_t>() != 0;
    const FormatParams p = params(pr[2].item<int64_t>(), sym);
    const QuantFormat& f = format_by_name(bits == 4 ? "int4" : "int8");
    INFO("case " << k << ": " << f.name() << (sym ? " symmetric" : " asymmetric") << " group " << p.block_size
                 << " " << w.scalar_type() << " " << w.sizes());
    seen.insert(f.name() + (sym ? "s" : "a") + c10::toString(w.scalar_type()));
    const QuantizedTensor q = f.quantize(w, p);
    std::vector<std::string> names = {"weight_packed", "weight_scale", "weight_shape"};
    if (!sym) names.push_back("weight_zero_point");
    REQUIRE(q.parts.size() == names.size());
    for (const auto& name : names) {
      INFO("part " << name);
      CHECK(same_bytes(q.parts.at(name), tensor_view(*ckpt, k + "." + name)));
    }
    CHECK(same_bytes(f.dequantize(q, w.scalar_type()), tensor_view(*ckpt, k + ".dequant")));
    require_same_parts(q, f.quantize_torch_ops(w, p));
    if (w.dim() == 3) {  // a stack equals its experts quantized alone
      ++stacks;
      for (int64_t e = 0; e < w.size(0); ++e) {
        const QuantizedTensor qe = f.quantize(w[e], p);
        for (const auto& [name, t] : qe.parts) CHECK(same_bytes(q.parts.at(name)[e], t));
      }
    }
  }
  CHECK(seen.size() == 12);
  CHECK(stacks == 12);
}

TEST_CASE("intq: NaN or Inf in the weight is an error on both paths", "[intq]") {
  for (const char* name : {"int4", "int8"}) {
    const QuantFormat& f = format_by_name(name);
    for (double bad : {std::nan(""), double(INFINITY), -double(INFINITY)}) {
      for (auto t : {at::kBFloat16, at::kHalf, at::kFloat}) {
        at::Tensor w = at::randn({2, 8, 256}).to(t);
        w[1][5][130] = bad;
        for (bool sym : {true, false}) {
          REQUIRE_ERROR_MENTIONS(f.quantize(w, params(0, sym)), name, "NaN or Inf");
          REQUIRE_ERROR_MENTIONS(f.quantize_torch_ops(w, params(0, sym)), name, "NaN or Inf");
        }
      }
    }
  }
}

TEST_CASE("intq: parameters and shapes it cannot honour are clear errors", "[intq]") {
  const QuantFormat& i4 = format_by_name("int4");
  const QuantFormat& i8 = format_by_name("int8");
  const at::Tensor w = at::randn({8, 256}).to(at::kBFloat16);
  REQUIRE_ERROR_MENTIONS(i4.quantize(w, params(100, true)), "int4", "100", "multiple of 8", "256");
  REQUIRE_ERROR_MENTIONS(i4.quantize(w, params(4, true)), "int4", "multiple of 8");
  REQUIRE_ERROR_MENTIONS(i8.quantize(w, params(-1, true)), "int8", "multiple of 4");
  REQUIRE_ERROR_MENTIONS(i8.quantize(at::randn({8, 64}), params(0, true)), "int8", "divides the input dimension 64",
                         "0 selects 128");
  REQUIRE_ERROR_MENTIONS(i4.quantize_torch_ops(at::randn({8, 96}), params(0, false)), "int4", "96");
  REQUIRE_ERROR_MENTIONS(i4.validate({8, 200}, params(0, true)), "int4", "200");
  REQUIRE_ERROR_MENTIONS(i4.quantize(at::randn({256}), params(0, true)), "int4", "2D");
  REQUIRE_ERROR_MENTIONS(i4.quantize(w.to(at::kDouble), params(0, true)), "int4", "bf16, f16 or f32");
  REQUIRE_ERROR_MENTIONS(i4.quantize(w, params(0, true), at::ones({})), "int4", "amax");
  // f16 scales overflow when a group spans more than 65504: compressed-tensors would store inf.
  at::Tensor h = at::zeros({8, 128}, at::kHalf);
  h[3][0] = 60000;
  h[3][1] = -60000;
  for (const QuantFormat* f : {&i4, &i8}) {
    REQUIRE_ERROR_MENTIONS(f->quantize(h, params(0, false)), f->name().c_str(), "overflows", "Half");
    REQUIRE_ERROR_MENTIONS(f->quantize_torch_ops(h, params(0, false)), f->name().c_str(), "overflows");
    CHECK_NOTHROW(f->quantize(h, params(0, true)));
  }
  CHECK(i4.bits_per_weight({8, 256}, params(0, true)) == Catch::Approx(4.125));
  CHECK(i4.bits_per_weight({8, 256}, params(32, false)) == Catch::Approx(4 + 0.5 + 0.125));
  CHECK(i8.bits_per_weight({8, 256}, params(0, true)) == Catch::Approx(8.125));
}

TEST_CASE("intq: kernel == torch-op path on stacks, group sizes and dtypes", "[intq]") {
  int n = 0;
  for_each_case([&](const QuantFormat& f, const at::Tensor& w, const FormatParams& p) {
    ++n;
    const QuantizedTensor q = f.quantize(w, p);
    require_same_parts(q, f.quantize_torch_ops(w, p));
    // Error bound in steps: half a step, a whole one at the range ends where the rounded
    // zero point shifts the grid, plus the scale and quotient rounding to T (large for
    // bf16 int8, whose quotients up to 127.5 keep 8 significant bits). Groups with a
    // subnormal scale (few significant bits) are left out.
    const at::ScalarType t = w.scalar_type();
    const at::Tensor step = q.parts.at("weight_scale").to(at::kFloat).repeat_interleave(q.params.block_size, -1);
    const at::Tensor normal = step >= (t == at::kHalf ? 6.2e-5f : 1.2e-38f);
    const at::Tensor err = ((f.dequantize(q) - w.to(at::kFloat)).abs() / step).masked_fill(~normal, 0);
    const bool coarse = t == at::kBFloat16 && f.name() == "int8";
    CHECK(err.max().item<float>() <= (p.symmetric ? 0.6f : 1.1f) + (coarse ? 0.5f : 0.f));
  });
  CHECK(n == 108);
}

TEST_CASE("intq: round-trip SQNR on Gaussian and Student-t weights", "[intq]") {
  at::manual_seed(0);
  const at::Tensor gauss = at::randn({512, 1024});
  // Student-t, 3 degrees of freedom: normal / sqrt(chi2_3 / 3).
  const at::Tensor chi2 = at::randn({3, 512, 1024}).pow(2).sum(0);
  const at::Tensor student = at::randn({512, 1024}) / (chi2 / 3).sqrt();
  // Measured with this seed, group 128, f32 weights. Estimate for Gaussian int4 symmetric:
  // step = amax/7.5 with amax ~ 2.8 sigma over 128 samples, noise step^2/12 -> ~19.3 dB;
  // int8 adds 20*log10(127.5/7.5) = 24.6 dB. Heavy tails widen the groups (lower SQNR);
  // asymmetric spends its range on [min, max] only (higher). A wrong rounding mode, range
  // (e.g. amax/7) or zero point moves these by more than the 0.2 dB margin.
  struct Expect { const char* fmt; bool sym; double gauss, student; };
  for (const Expect& x : {Expect{"int4", true, 19.11, 13.50}, Expect{"int4", false, 19.95, 15.72},
                          Expect{"int8", true, 43.72, 36.80}, Expect{"int8", false, 44.56, 39.87}}) {
    const QuantFormat& f = format_by_name(x.fmt);
    const double g = sqnr_db(gauss, f.dequantize(f.quantize(gauss, params(0, x.sym))));
    const double s = sqnr_db(student, f.dequantize(f.quantize(student, params(0, x.sym))));
    INFO(x.fmt << (x.sym ? " symmetric" : " asymmetric") << ": Gaussian " << g << " dB, Student-t " << s << " dB");
    CHECK(g == Catch::Approx(x.gauss).margin(0.2));
    CHECK(s == Catch::Approx(x.student).margin(0.2));
  }
}

TEST_CASE("intq: CUDA kernel gives the CPU bytes", "[intq][cuda]") {
  if (!at::hasCUDA()) SKIP("no CUDA device");
  for_each_case([&](const QuantFormat& f, const at::Tensor& w, const FormatParams& p) {
    const QuantizedTensor cpu = f.quantize(w, p), gpu = f.quantize(w.cuda(), p);
    for (const auto& [part, tensor] : gpu.parts) CHECK(tensor.is_cuda());
    require_same_parts(cpu, gpu);
    CHECK(same_bytes(f.dequantize(cpu, w.scalar_type()), f.dequantize(gpu, w.scalar_type())));
  });
  for (const char* name : {"int4", "int8"}) {
    at::Tensor bad = at::randn({2, 8, 256}, at::kCUDA);
    bad[1][3][7] = std::nan("");
    for (bool sym : {true, false})
      REQUIRE_ERROR_MENTIONS(format_by_name(name).quantize(bad, params(0, sym)), name, "NaN or Inf");
  }
}
