// bitsandbytes NF4 / FP4 ("nf4", "fp4"). Oracle: bitsandbytes 0.50.2 (torch 2.11.0):
// its CUDA kernels' output (tests/data/bnb4_cuda_ref.safetensors, written on an H200 by
// tests/python/oracle_bnb4.py --device cuda) and, live, its CPU path and dequantize_4bit.
#include <ATen/ATen.h>
#include <catch2/catch_approx.hpp>
#include <catch2/catch_test_macros.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "formats/bnb4/bnb4.h"
#include "formats/bnb4/bnb4_kernels.h"
#include "formats/cuda_stream.h"
#include "formats/format.h"
#include "tensor/aten_view.h"
#include "io/checkpoint.h"
#include "test_util.h"

namespace moeq {
namespace {

const std::vector<std::string> kParts = {"weight", "absmax", "quant_map", "nested_absmax", "nested_quant_map",
                                         "nested_offset"};

// Number of differing bytes (or -1 when shape or dtype differ).
int64_t byte_diff(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type()) return -1;
  const at::Tensor x = a.contiguous().cpu().reshape({-1}).view(at::kByte);
  const at::Tensor y = b.contiguous().cpu().reshape({-1}).view(at::kByte);
  return x.ne(y).sum().item<int64_t>();
}
#define REQUIRE_SAME_BYTES(a, b)                                                                  \
  do {                                                                                            \
    const at::Tensor a_ = (a), b_ = (b);                                                          \
    INFO("shapes " << a_.sizes() << " " << a_.scalar_type() << " vs " << b_.sizes() << " " << b_.scalar_type()); \
    REQUIRE(byte_diff(a_, b_) == 0);                                                              \
  } while (0)

struct Case {
  std::string name, input, type;
  int64_t block = 0;
  bool dq = false;
};

// Cases of a fixture, from the names "<input>__<nf4|fp4>_<block>_<plain|dq>.weight".
std::vector<Case> cases_of(const Checkpoint& ck) {
  std::vector<Case> out;
  for (const auto& n : ck.names()) {
    const size_t dot = n.rfind(".weight"), sep = n.find("__");
    if (n.rfind("in.", 0) == 0 || dot == std::string::npos || dot + 7 != n.size()) continue;
    Case c;
    c.name = n.substr(0, dot);
    c.input = n.substr(0, sep);
    const std::string rest = c.name.substr(sep + 2);
    c.type = rest.substr(0, 3);
    c.block = std::stoll(rest.substr(4, rest.rfind('_') - 4));
    c.dq = rest.substr(rest.rfind('_') + 1) == "dq";
    out.push_back(c);
  }
  return out;
}

FormatParams params(int64_t block, bool dq) {
  FormatParams p;
  p.block_size = block;
  p.double_quant = dq;
  return p;
}

at::Tensor part(const Checkpoint& ck, const Case& c, const std::string& k) { return tensor_view(ck, c.name + "." + k); }

// A QuantizedTensor holding the reference's parts (as a loader would build it).
QuantizedTensor from_ref(const Checkpoint& ck, const Case& c, const at::Tensor& input) {
  QuantizedTensor q;
  q.format = c.type;
  q.shape = input.sizes().vec();
  q.orig_dtype = input.scalar_type();
  q.params = params(c.block, c.dq);
  for (const auto& k : kParts)
    if (ck.has(c.name + "." + k)) q.parts[k] = part(ck, c, k);
  return q;
}

std::string bytes_str(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  return std::string(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), c.numel());
}

at::Tensor gen_randn(std::vector<int64_t> shape, uint64_t seed) {
  return at::randn(shape, at::detail::createCPUGenerator(seed));
}
// Student-t with 3 degrees of freedom: normal / sqrt(chi2_3 / 3).
at::Tensor gen_student_t(std::vector<int64_t> shape, uint64_t seed) {
  auto g = at::detail::createCPUGenerator(seed);
  at::Tensor z = at::randn(shape, g);
  std::vector<int64_t> s3 = shape;
  s3.push_back(3);
  at::Tensor chi = at::randn(s3, g).pow(2).sum(-1);
  return z / (chi / 3).sqrt();
}

// Adversarial blocks of 64 (for block 64): zeros, equal values, -0, subnormals, tiny and
// huge scales, values exactly on the NF4/FP4 thresholds (absmax 1 and 0.75) and next to them.
at::Tensor adversarial(uint64_t seed) {
  at::Tensor b = gen_randn({24, 64}, seed);
  b[0].zero_();
  b[1].fill_(0.5);
  b[2].fill_(-0.0);
  b[3] = at::randint(-3, 4, {64}, at::detail::createCPUGenerator(seed + 1)).to(at::kFloat) * 1e-40f;
  b[4] = b[4] * 1e-37f;
  b[5][7] = 3e38f;
  b[6][1] = 1e30f;
  const uint32_t nf4[15] = MOEQ_BNB_NF4_THRESHOLDS, fp4[7] = MOEQ_BNB_FP4_THRESHOLDS;
  for (int k = 0; k < 4; ++k) {
    const float scale = k % 2 ? 0.75f : 1.f;
    at::Tensor v = at::zeros({64});
    int i = 0;
    for (int t = 0; t < (k < 2 ? 15 : 7); ++t) {
      const float th = bnb::u2f(k < 2 ? nf4[t] : fp4[t]) * scale;
      for (float x : {th, std::nextafter(th, 2.f), std::nextafter(th, -2.f)}) {
        v[i++] = x;
        if (k >= 2) v[i++] = -x;
      }
    }
    v[63] = scale;
    b[7 + k] = v;
  }
  b[11] = at::tensor({1.f, -1.f, 1e-3f, -1e-3f, 1e-4f, -1e-4f, 0.f, -0.f}).repeat({8});
  b.slice(0, 12) *= at::pow(10.0, at::rand({12, 1}, at::detail::createCPUGenerator(seed + 2)) * 6 - 4);
  return b.reshape({12, 128});
}

double sqnr_db(const at::Tensor& w, const at::Tensor& deq) {
  const at::Tensor x = w.to(at::kDouble), d = deq.to(at::kDouble);
  return 10.0 * std::log10(x.pow(2).sum().item<double>() / (x - d).pow(2).sum().item<double>());
}

// ---------------------------------------------------------------------------------------

TEST_CASE("bnb4 matches bitsandbytes' CUDA kernels byte for byte", "[formats][bnb4][oracle]") {
  const std::string dir = test::oracle_dir();
  auto ref = Checkpoint::open_file(dir + "/bnb4_cuda_ref.safetensors");
  auto cpu = Checkpoint::open_file(dir + "/bnb4_cpu.safetensors");  // bitsandbytes on CPU, dequantize_4bit
  const auto cases = cases_of(*ref);
  REQUIRE(cases.size() == 76);  // oracle_bnb4.py's case list
  int dq_cases = 0, same_offset = 0, varied = 0;
  for (const auto& c : cases) {
    INFO("case " << c.name);
    const at::Tensor w = tensor_view(*ref, "in." + c.input);
    const QuantFormat& f = format_by_name(c.type);
    const QuantizedTensor plain = f.quantize(w, params(c.block, false));
    const QuantizedTensor q = c.dq ? f.quantize(w, params(c.block, true)) : plain;
    REQUIRE_SAME_BYTES(q.parts.at("weight"), part(*ref, c, "weight"));
    const at::Tensor rw = part(*ref, c, "weight").reshape({-1});
    varied += rw.ne(rw[0]).any().item<bool>();
    REQUIRE_SAME_BYTES(q.parts.at("quant_map"), part(*ref, c, "quant_map"));
    if (!c.dq) {
      REQUIRE(q.parts.size() == 3);
      REQUIRE_SAME_BYTES(q.parts.at("absmax"), part(*ref, c, "absmax"));
      REQUIRE(bnb4_quant_state_tensor(q).equal(part(*ref, c, "qs_json")));
    } else {
      ++dq_cases;
      REQUIRE(q.parts.size() == 6);
      REQUIRE_SAME_BYTES(q.parts.at("nested_quant_map"), part(*ref, c, "nested_quant_map"));
      // The offset is torch's mean on the quantizing device: ours (CPU) equals bitsandbytes'
      // on CPU; on CUDA torch sums in another order. The nested stage is held to the CUDA
      // bytes with the CUDA offset.
      REQUIRE_SAME_BYTES(q.parts.at("nested_offset"), tensor_view(*cpu, c.name + ".nested_offset"));
      const at::Tensor ref_off = part(*ref, c, "nested_offset");
      const int64_t E = w.dim() == 3 ? w.size(0) : 1;
      auto [codes, nested] = bnb4_quantize_nested(plain.parts.at("absmax").reshape({E, -1}), ref_off.reshape({E}));
      REQUIRE_SAME_BYTES(codes.view(part(*ref, c, "absmax").sizes()), part(*ref, c, "absmax"));
      REQUIRE_SAME_BYTES(nested.view(part(*ref, c, "nested_absmax").sizes()), part(*ref, c, "nested_absmax"));
      if (byte_diff(q.parts.at("nested_offset"), ref_off) == 0) {
        ++same_offset;
        for (const auto& k : kParts) REQUIRE_SAME_BYTES(q.parts.at(k), part(*ref, c, k));
      }
      // The packed JSON, with the CUDA offset (Python float repr of it).
      const std::vector<int64_t> shape(w.sizes().end() - 2, w.sizes().end());
      const float off0 = ref_off.reshape({-1})[0].item<float>();
      REQUIRE(bnb4_quant_state_json(c.type, c.block, w.scalar_type(), shape, off0) ==
              bytes_str(part(*ref, c, "qs_json")));
    }
    // bitsandbytes' dequantize_4bit (on CPU) of the CUDA parts == ours of the same parts
    // (NaN bit patterns aside: an offset that overflowed to inf gives NaN).
    at::Tensor deq = tensor_view(*cpu, c.name + ".deq");
    at::Tensor mine = f.dequantize(from_ref(*ref, c, w), at::kFloat);
    // The .deq values come from bitsandbytes' pure-torch CPU kernel on every host
    // (tests/python/bnb_cpu_pin.py: its C AVX-512 kernel, taken on AVX-512 hosts, decodes rows
    // shorter than a block with the wrong absmax, e.g. dq_big at block 256). FP4 code 8 is -0 in
    // bitsandbytes' CUDA kernels (and moeq) but +0 in that torch kernel: the sign is folded.
    if (c.type == "fp4") {
      mine = mine + 0.0;
      deq = deq + 0.0;
    }
    REQUIRE(at::isnan(mine).equal(at::isnan(deq)));
    REQUIRE_SAME_BYTES(at::where(at::isnan(mine), at::zeros_like(mine), mine),
                       at::where(at::isnan(deq), at::zeros_like(deq), deq));
  }
  REQUIRE(dq_cases == 40);
  REQUIRE(varied == 72);  // all but the four all-zero cases have varied codes
  INFO("dq cases whose CPU mean equals the CUDA one: " << same_offset);
  CHECK(same_offset >= 10);
}

// bitsandbytes on CPU runs other arithmetic (bnb4_kernels.h). On ordinary (non-adversarial)
// data its NF4 codes equal the CUDA ones; its FP4 codes do once its signed zero (code 8 for
// tiny positives) is folded, except next to the thresholds its CPU path places a few ulps
// away. The packed JSON and the offset (both torch CPU means) agree everywhere.
TEST_CASE("bnb4 agrees with bitsandbytes' CPU path where their arithmetic meets", "[formats][bnb4][oracle]") {
  const std::string dir = test::oracle_dir();
  auto ref = Checkpoint::open_file(dir + "/bnb4_cuda_ref.safetensors");
  auto cpu = Checkpoint::open_file(dir + "/bnb4_cpu.safetensors");
  const auto cases = cases_of(*cpu);
  REQUIRE(cases.size() == 76);
  const uint32_t fp4_t[7] = MOEQ_BNB_FP4_THRESHOLDS;
  int compared = 0, near_threshold = 0;
  for (const auto& c : cases) {
    INFO("case " << c.name);
    const at::Tensor w = tensor_view(*ref, "in." + c.input);
    const QuantizedTensor q = format_by_name(c.type).quantize(w, params(c.block, c.dq));
    REQUIRE(bnb4_quant_state_tensor(q).equal(part(*cpu, c, "qs_json")));
    if (c.input.rfind("adv_", 0) == 0 || c.input == "zeros" || c.dq) continue;
    REQUIRE_SAME_BYTES(q.parts.at("absmax"), part(*cpu, c, "absmax"));
    auto nibbles = [&](const at::Tensor& b) {
      at::Tensor n = at::stack({b.reshape({-1}).bitwise_right_shift(4), b.reshape({-1}).bitwise_and(15)}, 1);
      n = n.reshape({-1}).narrow(0, 0, w.numel());
      return c.type == "fp4" ? at::where(n == 8, at::zeros_like(n), n) : n;
    };
    const at::Tensor differ = nibbles(q.parts.at("weight")).ne(nibbles(part(*cpu, c, "weight"))).nonzero().reshape({-1});
    if (c.type == "nf4") REQUIRE(differ.numel() == 0);
    const at::Tensor x = w.reshape({-1}).to(at::kFloat), absmax = q.parts.at("absmax").reshape({-1});
    for (int64_t i = 0; i < differ.numel(); ++i) {
      const int64_t j = differ[i].item<int64_t>();
      const float s = std::fabs(x[j].item<float>() / absmax[j / c.block].item<float>());
      bool near = false;
      for (uint32_t t : fp4_t) near = near || std::fabs(s - bnb::u2f(t)) < 1e-6f;
      INFO("element " << j << " at " << s << " of absmax");
      REQUIRE(near);
      ++near_threshold;
    }
    ++compared;
  }
  REQUIRE(compared == 24);
  INFO("FP4 codes that differ next to a threshold: " << near_threshold);
  CHECK(near_threshold < 20);
}

TEST_CASE("bnb4 kernel and torch-op path give the same bytes", "[formats][bnb4]") {
  std::vector<std::pair<std::string, at::Tensor>> inputs = {
      {"gauss", gen_randn({32, 256}, 1) * 0.02},
      {"student_t", gen_student_t({16, 192}, 2) * 0.01},
      {"adversarial", adversarial(3)},
      {"odd", gen_randn({5, 27}, 4)},
      {"stack", gen_randn({3, 24, 40}, 5)},
      {"stack_odd", gen_randn({2, 7, 9}, 6)},
      {"zeros", at::zeros({4, 64})},
  };
  for (const auto& [label, x] : inputs)
    for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf})
      for (const std::string type : {"nf4", "fp4"})
        for (int64_t block : {32, 64, 128, 256, 512, 1024, 2048, 4096})
          for (bool dq : {false, true}) {
            INFO(label << " " << c10::toString(dtype) << " " << type << " block " << block << " dq " << dq);
            const at::Tensor w = (dtype == at::kHalf ? x.clamp(-6e4, 6e4) : x).to(dtype);
            const QuantFormat& f = format_by_name(type);
            const QuantizedTensor a = f.quantize(w, params(block, dq));
            const QuantizedTensor b = f.quantize_torch_ops(w, params(block, dq));
            REQUIRE(a.parts.size() == b.parts.size());
            for (const auto& [k, t] : a.parts) REQUIRE_SAME_BYTES(t, b.parts.at(k));
          }
}

TEST_CASE("bnb4 quantizes each expert of a stack on its own", "[formats][bnb4]") {
  const at::Tensor w = gen_randn({4, 16, 72}, 7) * at::tensor({0.01f, 1.f, 0.f, 30.f}).view({4, 1, 1});
  for (const std::string type : {"nf4", "fp4"})
    for (bool dq : {false, true}) {
      const QuantFormat& f = format_by_name(type);
      const QuantizedTensor s = f.quantize(w, params(128, dq));
      for (int64_t e = 0; e < 4; ++e) {
        const QuantizedTensor one = f.quantize(w[e], params(128, dq));
        for (const auto& [k, t] : one.parts) REQUIRE_SAME_BYTES(s.parts.at(k)[e], t);
        REQUIRE(bnb4_quant_state_json(s, e) == bnb4_quant_state_json(one));
      }
      REQUIRE(f.dequantize(s).equal(at::stack({f.dequantize(f.quantize(w[0], params(128, dq))),
                                               f.dequantize(f.quantize(w[1], params(128, dq))),
                                               f.dequantize(f.quantize(w[2], params(128, dq))),
                                               f.dequantize(f.quantize(w[3], params(128, dq)))})));
    }
}

TEST_CASE("bnb4 refuses NaN and Inf", "[formats][bnb4]") {
  for (const std::string type : {"nf4", "fp4"})
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity()})
      for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf})
        for (bool stack : {false, true}) {
          at::Tensor w = gen_randn(stack ? std::vector<int64_t>{2, 8, 64} : std::vector<int64_t>{8, 64}, 8);
          w.view({-1})[w.numel() - 3] = bad;
          w = w.to(dtype);
          const QuantFormat& f = format_by_name(type);
          REQUIRE_ERROR_MENTIONS(f.quantize(w, params(64, false)), "NaN or Inf");
          REQUIRE_ERROR_MENTIONS(f.quantize(w, params(64, true)), "NaN or Inf");
          REQUIRE_ERROR_MENTIONS(f.quantize_torch_ops(w, params(64, false)), "NaN or Inf");
        }
}

TEST_CASE("bnb4 validates its parameters", "[formats][bnb4]") {
  const QuantFormat& f = format_by_name("nf4");
  const at::Tensor w = gen_randn({8, 64}, 9);
  for (int64_t b : {16, 48, 100, 8192}) {
    const std::string size = "block size " + std::to_string(b) + " is not supported";
    REQUIRE_ERROR_MENTIONS(f.quantize(w, params(b, false)), "nf4", size.c_str(), "32, 64");
  }
  REQUIRE_ERROR_MENTIONS(format_by_name("fp4").validate({8, 64}, params(3, false)), "fp4", "block size 3");
  REQUIRE_ERROR_MENTIONS(f.quantize(w, params(64, false), at::ones({})), "amax");
  REQUIRE_ERROR_MENTIONS(f.quantize(w.reshape({-1}), params(64, false)), "2D", "3D");
  REQUIRE_ERROR_MENTIONS(f.quantize(w.to(at::kInt), params(64, false)), "bf16, f16 or f32");
  REQUIRE_ERROR_MENTIONS(f.validate({0, 64}, params(64, false)), "empty");
  // Block size 0 means the default, 64; a weight need not fill its last block.
  REQUIRE(f.quantize(w, FormatParams{}).parts.at("absmax").numel() == 8);
  REQUIRE(f.quantize(gen_randn({3, 5}, 10), params(4096, false)).parts.at("weight").sizes() ==
          std::vector<int64_t>{8, 1});
}

TEST_CASE("bnb4 layout: first element in the high nibble, codes on the bitsandbytes tables", "[formats][bnb4]") {
  // absmax 1: values that are the NF4 table entries get their indices as codes.
  const QuantFormat& nf4 = format_by_name("nf4");
  const at::Tensor table = nf4.quantize(at::ones({1, 32}), params(32, false)).parts.at("quant_map");
  REQUIRE(table[1].item<float>() == Catch::Approx(-0.6961928009986877).margin(1e-7));
  REQUIRE(table[14].item<float>() == Catch::Approx(0.7229568362236023).margin(1e-7));
  const at::Tensor w = table.view({2, 8});
  const QuantizedTensor q = nf4.quantize(w, params(32, false));
  const at::Tensor bytes = q.parts.at("weight").reshape({-1});
  for (int j = 0; j < 8; ++j) REQUIRE(bytes[j].item<int>() == ((2 * j) << 4 | (2 * j + 1)));
  REQUIRE(nf4.dequantize(q).equal(w));
  // FP4 of +-0.5 * absmax: code 0b0101, sign bit 8; an all-zero block stays zero.
  const at::Tensor f = at::tensor({1.f, 0.5f, -0.5f, -1.f});
  REQUIRE(format_by_name("fp4").quantize(f.view({1, 4}), params(32, false)).parts.at("weight").reshape({-1}).equal(
      at::tensor({0x35, 0xdb}, at::kByte)));
  // FP4 code 8 (a tiny negative) dequantizes to -0.0, as in bitsandbytes' kernels.
  const QuantizedTensor t = format_by_name("fp4").quantize(at::tensor({1.f, -1e-4f}).view({1, 2}), params(32, false));
  REQUIRE(t.parts.at("weight").reshape({-1})[0].item<int>() == 0x38);
  REQUIRE(std::signbit(format_by_name("fp4").dequantize(t)[0][1].item<float>()));
  const QuantizedTensor z = format_by_name("nf4").quantize(at::zeros({2, 64}), params(64, true));
  REQUIRE(format_by_name("nf4").dequantize(z).abs().max().item<float>() == 0.f);
}

TEST_CASE("bnb4 bits per weight", "[formats][bnb4]") {
  const QuantFormat& f = format_by_name("fp4");
  REQUIRE(f.bits_per_weight({128, 256}, FormatParams{}) == Catch::Approx(4.5));
  REQUIRE(f.bits_per_weight({128, 256}, params(128, false)) == Catch::Approx(4.25));
  REQUIRE(f.bits_per_weight({128, 256}, params(64, true)) == Catch::Approx(4.0 + 8.0 / 64 + 32.0 / (64 * 256)));
}

TEST_CASE("bnb4 quant-state JSON as bitsandbytes packs it", "[formats][bnb4]") {
  REQUIRE(bnb4_quant_state_json("nf4", 64, at::kBFloat16, {48, 192}, std::nullopt) ==
          R"({"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [48, 192]})");
  // nested_offset: Python's repr of the float32 value widened to double.
  auto with = [](float off) { return bnb4_quant_state_json("fp4", 128, at::kHalf, {7, 9}, off); };
  REQUIRE(with(0.05176036059856415f) ==
          R"({"quant_type": "fp4", "blocksize": 128, "dtype": "float16", "shape": [7, 9], )"
          R"("nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.05176036059856415})");
  auto off = [&](float v) {
    const std::string s = with(v);
    return s.substr(s.rfind(": ") + 2, s.size() - s.rfind(": ") - 3);
  };
  REQUIRE(off(0.f) == "0.0");
  REQUIRE(off(1234.5f) == "1234.5");
  REQUIRE(off(1e-5f) == "9.999999747378752e-06");
  REQUIRE(off(1e-4f) == "9.999999747378752e-05");
  REQUIRE(off(0.001f) == "0.0010000000474974513");
  REQUIRE(off(3e20f) == "3.000000060122632e+20");
  REQUIRE(off(1e16f) == "1.0000000272564224e+16");
  REQUIRE(off(std::numeric_limits<float>::infinity()) == "Infinity");  // json.dumps of inf
  REQUIRE(off(65536.f * 65536.f * 4096.f) == "17592186044416.0");
  const QuantizedTensor q = format_by_name("nf4").quantize(gen_randn({2, 4, 64}, 11).to(at::kBFloat16), params(64, true));
  const std::string j1 = bnb4_quant_state_json(q, 1);
  REQUIRE(j1.find(R"("dtype": "bfloat16", "shape": [4, 64], "nested_blocksize": 256)") != std::string::npos);
  REQUIRE(bytes_str(bnb4_quant_state_tensor(q, 1)) == j1);
  REQUIRE_ERROR_MENTIONS(bnb4_quant_state_json(q, 2), "expert 2");
}

// Round-trip SQNR, 256x1024 f32. Measured (block 64): NF4 Gaussian 20.73 dB, Student-t(3)
// 19.14 dB; FP4 Gaussian 18.25 dB, Student-t(3) 15.62 dB; double quant costs < 0.01 dB and
// block 4096 1.6 dB (NF4, Gaussian: 19.15 dB). Bounds: +-0.5 dB around the measurement.
TEST_CASE("bnb4 round-trip SQNR", "[formats][bnb4]") {
  const at::Tensor gauss = gen_randn({256, 1024}, 12) * 0.02;
  const at::Tensor heavy = gen_student_t({256, 1024}, 13) * 0.01;
  struct Expect {
    const char* type;
    const at::Tensor* w;
    int64_t block;
    bool dq;
    double lo, hi;
  };
  const Expect expect[] = {
      {"nf4", &gauss, 64, false, 20.2, 21.2},  {"nf4", &gauss, 64, true, 20.2, 21.2},
      {"nf4", &heavy, 64, false, 18.6, 19.6},  {"fp4", &gauss, 64, false, 17.7, 18.7},
      {"fp4", &heavy, 64, false, 15.1, 16.1},  {"nf4", &gauss, 4096, false, 18.6, 19.7},
  };
  for (const auto& e : expect) {
    const QuantFormat& f = format_by_name(e.type);
    const double s = sqnr_db(*e.w, f.dequantize(f.quantize(*e.w, params(e.block, e.dq))));
    INFO(e.type << " block " << e.block << " dq " << e.dq << ": " << s << " dB");
    CHECK(s > e.lo);
    CHECK(s < e.hi);
  }
}

// ---- CUDA: the same bytes as the CPU path; the GPU reciprocal the table models ----------

TEST_CASE("bnb4 CUDA kernels give the CPU bytes", "[formats][bnb4][cuda]") {
  if (!at::hasCUDA()) SKIP("no CUDA device");
  std::vector<at::Tensor> inputs = {gen_randn({64, 256}, 21) * 0.02, gen_student_t({3, 40, 96}, 22),
                                    adversarial(23), gen_randn({5, 27}, 24), gen_randn({2, 7, 9}, 25),
                                    at::zeros({4, 64}), gen_randn({300, 128}, 26)};
  int offsets_differ = 0;
  for (size_t i = 0; i < inputs.size(); ++i)
    for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf})
      for (const std::string type : {"nf4", "fp4"})
        for (int64_t block : {32, 64, 128, 256, 512, 1024, 2048, 4096})
          for (bool dq : {false, true}) {
            INFO("input " << i << " " << c10::toString(dtype) << " " << type << " block " << block << " dq " << dq);
            const at::Tensor w = (dtype == at::kHalf ? inputs[i].clamp(-6e4, 6e4) : inputs[i]).to(dtype);
            const QuantFormat& f = format_by_name(type);
            const QuantizedTensor c = f.quantize(w, params(block, dq));
            const QuantizedTensor g = f.quantize(w.cuda(), params(block, dq));
            const QuantizedTensor t = f.quantize_torch_ops(w.cuda(), params(block, dq));
            REQUIRE(g.parts.at("weight").is_cuda());
            for (const auto& [k, v] : g.parts) REQUIRE_SAME_BYTES(v, t.parts.at(k));
            if (dq && byte_diff(c.parts.at("nested_offset"), g.parts.at("nested_offset")) > 0) {
              // torch's CUDA mean rounded differently: hold the nested stage to the CPU one
              // with the same offset.
              ++offsets_differ;
              const int64_t E = w.dim() == 3 ? w.size(0) : 1;
              const QuantizedTensor plain = f.quantize(w, params(block, false));
              const at::Tensor a = plain.parts.at("absmax").reshape({E, -1});
              const at::Tensor o = g.parts.at("nested_offset").cpu().reshape({E});
              auto [cc, cn] = bnb4_quantize_nested(a, o);
              auto [gc, gn] = bnb4_quantize_nested(a.cuda(), o.cuda());
              REQUIRE_SAME_BYTES(cc, gc);
              REQUIRE_SAME_BYTES(cn, gn);
              REQUIRE_SAME_BYTES(g.parts.at("absmax").reshape({E, -1}), gc);
              REQUIRE_SAME_BYTES(g.parts.at("weight"), c.parts.at("weight"));
              continue;
            }
            for (const auto& [k, v] : c.parts) REQUIRE_SAME_BYTES(v, g.parts.at(k));
            REQUIRE_SAME_BYTES(f.dequantize(g, dtype), f.dequantize(c, dtype));
          }
  WARN("CUDA cases whose torch mean differed from the CPU one: " << offsets_differ);
  REQUIRE_ERROR_MENTIONS(format_by_name("nf4").quantize(
                             at::full({4, 64}, std::numeric_limits<float>::quiet_NaN()).cuda(), params(64, false)),
                         "NaN or Inf");
}

TEST_CASE("bnb4 reciprocal table equals the GPU's rcp.approx.ftz.f32", "[formats][bnb4][cuda]") {
  if (!at::hasCUDA()) SKIP("no CUDA device");
  // Every positive normal float with at most 10 significant mantissa bits, all exponents.
  std::vector<uint32_t> bits;
  for (uint32_t e = 1; e < 255; ++e)
    for (uint32_t m = 0; m < 1024; ++m) bits.push_back(e << 23 | m << 13);
  const at::Tensor in = at::from_blob(bits.data(), {(int64_t)bits.size()}, at::kInt).clone().view(at::kFloat);
  const at::Tensor gin = in.cuda();
  at::Tensor gout = at::empty_like(gin);
  bnb::rcp_approx_cuda(gin.data_ptr<float>(), gout.data_ptr<float>(), gin.numel(), current_cuda_stream());
  const at::Tensor gpu = gout.cpu();
  const uint32_t nf4[15] = MOEQ_BNB_NF4_THRESHOLDS, fp4[7] = MOEQ_BNB_FP4_THRESHOLDS, plus[32] = MOEQ_BNB_RCP_PLUS,
                 minus[32] = MOEQ_BNB_RCP_MINUS, dyn[256] = MOEQ_BNB_DYNAMIC_MAP;
  const bnb::Tables t{nf4, fp4, plus, minus, dyn};
  const float* x = in.data_ptr<float>();
  const float* r = gpu.data_ptr<float>();
  int64_t wrong = 0;
  for (int64_t i = 0; i < in.numel(); ++i) {
    const float mine = bnb::rcp_bnb(x[i], t);
    if (std::memcmp(&mine, &r[i], 4) != 0) ++wrong;
  }
  REQUIRE(in.numel() == 254 * 1024);
  REQUIRE(wrong == 0);
}

TEST_CASE("bnb4 CUDA matches bitsandbytes' CUDA reference", "[formats][bnb4][cuda][oracle]") {
  if (!at::hasCUDA()) SKIP("no CUDA device");
  auto ref = Checkpoint::open_file(test::oracle_dir() + "/bnb4_cuda_ref.safetensors");
  const auto cases = cases_of(*ref);
  REQUIRE(cases.size() == 76);
  int same_offset = 0;
  for (const auto& c : cases) {
    INFO("case " << c.name);
    const at::Tensor w = tensor_view(*ref, "in." + c.input).cuda();
    const QuantizedTensor q = format_by_name(c.type).quantize(w, params(c.block, c.dq));
    REQUIRE_SAME_BYTES(q.parts.at("weight"), part(*ref, c, "weight"));
    if (!c.dq) {
      for (const auto& [k, v] : q.parts) REQUIRE_SAME_BYTES(v, part(*ref, c, k));
      continue;
    }
    // torch's CUDA mean can depend on the GPU model: compare the nested stage at the
    // reference's offset, and everything when the offsets agree.
    const int64_t E = w.dim() == 3 ? w.size(0) : 1;
    const at::Tensor a = format_by_name(c.type).quantize(w, params(c.block, false)).parts.at("absmax");
    auto [codes, nested] = bnb4_quantize_nested(a.reshape({E, -1}), part(*ref, c, "nested_offset").reshape({E}).cuda());
    REQUIRE_SAME_BYTES(codes.view(part(*ref, c, "absmax").sizes()), part(*ref, c, "absmax"));
    REQUIRE_SAME_BYTES(nested.view(part(*ref, c, "nested_absmax").sizes()), part(*ref, c, "nested_absmax"));
    if (byte_diff(q.parts.at("nested_offset"), part(*ref, c, "nested_offset")) == 0) {
      ++same_offset;
      for (const auto& [k, v] : q.parts) REQUIRE_SAME_BYTES(v, part(*ref, c, k));
    }
  }
  WARN("dq cases whose torch CUDA mean equals the reference's: " << same_offset << " of 40");
}

}  // namespace
}  // namespace moeq
