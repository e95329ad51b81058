// bitsandbytes NF4 / FP4 (see bnb4.h for the format, bnb4_kernels.h for the arithmetic).
#include "formats/bnb4/bnb4.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "formats/bnb4/bnb4_kernels.h"
#include "formats/cuda_stream.h"
#include "formats/format_util.h"

namespace moeq {
namespace {

using bnb::Layout;
using bnb::Tables;

constexpr uint32_t kNf4Thresholds[15] = MOEQ_BNB_NF4_THRESHOLDS;
constexpr uint32_t kFp4Thresholds[7] = MOEQ_BNB_FP4_THRESHOLDS;
constexpr uint32_t kNf4Table[16] = MOEQ_BNB_NF4_TABLE;
constexpr uint32_t kFp4Table[16] = MOEQ_BNB_FP4_TABLE;
constexpr uint32_t kRcpPlus[32] = MOEQ_BNB_RCP_PLUS;
constexpr uint32_t kRcpMinus[32] = MOEQ_BNB_RCP_MINUS;
constexpr uint32_t kDynamicMap[256] = MOEQ_BNB_DYNAMIC_MAP;
const Tables kTables{kNf4Thresholds, kFp4Thresholds, kRcpPlus, kRcpMinus, kDynamicMap};

constexpr float kFltMin = 1.17549435e-38f;

int64_t block_of(const FormatParams& p) { return p.block_size == 0 ? 64 : p.block_size; }

// A float32 table as a tensor on `device`.
at::Tensor table(const uint32_t* bits, int64_t n, const at::Device& device) {
  return at::from_blob(const_cast<uint32_t*>(bits), {n}, at::kInt).clone().view(at::kFloat).to(device);
}

// ---- CPU kernel ----------------------------------------------------------------------

// One OpenMP task per block of every expert: absmax, scale, codes, packed bytes.
template <typename In>
bool quantize_cpu(const typename In::T* w, const Layout& l, bool nf4, uint8_t* q, float* absmax) {
  using T = typename In::T;
  const int64_t nb = l.blocks(), total = l.experts * nb;
  bool finite = true;
#pragma omp parallel for reduction(&& : finite) schedule(static)
  for (int64_t g = 0; g < total; ++g) {
    const int64_t e = g / nb, start = (g % nb) * l.block, end = std::min(start + l.block, l.n);
    const T* x = w + e * l.n;
    float m = 0.f;
    bool ok = true;
    for (int64_t i = start; i < end; ++i) {
      const float v = In::load(x, i);
      ok = ok && std::isfinite(v);
      m = std::max(m, std::fabs(bnb::ftz(v)));
    }
    finite = finite && ok;
    absmax[g] = m;
    const float inv = bnb::rcp_bnb(m, kTables);
    uint8_t* out = q + e * l.bytes();
    for (int64_t i = start; i < end; i += 2) {
      const float hi = bnb::ftz(bnb::ftz(In::load(x, i)) * inv);
      const float lo = bnb::ftz(bnb::ftz(i + 1 < end ? In::load(x, i + 1) : 0.f) * inv);  // odd n pads 0
      out[i / 2] = static_cast<uint8_t>(bnb::code4(hi, nf4, kTables) << 4 | bnb::code4(lo, nf4, kTables));
    }
  }
  return finite;
}

void nested_cpu(const float* absmax, const float* offset, const Layout& l, uint8_t* codes, float* nested) {
  const int64_t nb = l.blocks(), nb2 = l.nested_blocks(), total = l.experts * nb2;
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < total; ++g) {
    const int64_t e = g / nb2, start = (g % nb2) * bnb::kNestedBlock;
    const int64_t end = std::min(start + bnb::kNestedBlock, nb);
    const float* a = absmax + e * nb;
    float m = 0.f;
    for (int64_t i = start; i < end; ++i) m = std::max(m, std::fabs(bnb::ftz(a[i] - offset[e])));
    nested[g] = m;
    const float inv = bnb::rcp_bnb(m, kTables);
    for (int64_t i = start; i < end; ++i)
      codes[e * nb + i] = bnb::dynamic_code(bnb::ftz(bnb::ftz(a[i] - offset[e]) * inv), kTables);
  }
}

// ---- the same math with ATen ops (the torch-op baseline) ------------------------------

at::Tensor ftz_t(const at::Tensor& x) { return at::where(x.abs() < kFltMin, at::zeros_like(x), x); }

at::Tensor rcp_t(const at::Tensor& a) {
  std::vector<int32_t> d(1024, 0);  // the table of rcp_bnb as ulp offsets by mantissa
  for (int m = 0; m < 1024; ++m) {
    const uint32_t bit = 1u << (m & 31);
    d[m] = (kRcpPlus[m >> 5] & bit) ? 1 : (kRcpMinus[m >> 5] & bit) ? -1 : 0;
  }
  const at::Tensor delta = at::from_blob(d.data(), {1024}, at::kInt).to(a.device(), /*non_blocking=*/false, /*copy=*/true);
  at::Tensor r = at::reciprocal(a).contiguous();
  at::Tensor bits = a.contiguous().view(at::kInt);
  at::Tensor exact10 = at::logical_and(bits.bitwise_and(0x1fff).eq(0), a > 0);
  at::Tensor adj = at::where(exact10, delta.index({bits.bitwise_right_shift(13).bitwise_and(0x3ff).to(at::kLong)}),
                             at::zeros_like(bits));
  return ftz_t((r.view(at::kInt) + adj).view(at::kFloat));
}

at::Tensor count_above(const at::Tensor& s, const uint32_t* thresholds, int n) {
  at::Tensor c = at::zeros(s.sizes(), s.options().dtype(at::kInt));
  for (int i = 0; i < n; ++i) c += (s > bnb::u2f(thresholds[i])).to(at::kInt);
  return c;
}

at::Tensor codes4_t(const at::Tensor& s, bool nf4) {
  if (nf4) return count_above(s, kNf4Thresholds, 15);
  at::Tensor lut = at::tensor({0, 1, 6, 7, 4, 5, 2, 3}, at::kInt).to(s.device());
  at::Tensor mag = lut.index({count_above(s.abs(), kFp4Thresholds, 7).to(at::kLong)});
  return mag + (s < 0).to(at::kInt) * 8;
}

at::Tensor dynamic_codes_t(const at::Tensor& s) {
  at::Tensor code = table(kDynamicMap, 256, s.device());
  auto full = [&](double v, at::ScalarType t) { return at::full(s.sizes(), v, s.options().dtype(t)); };
  at::Tensor pivot = full(127, at::kLong), up = full(255, at::kLong), lo = full(0, at::kLong);
  at::Tensor lower = full(-1.0, at::kFloat), upper = full(1.0, at::kFloat);
  at::Tensor val = code.index({pivot});
  for (int i = 64; i > 0; i >>= 1) {
    at::Tensor gt = s > val;
    lo = at::where(gt, pivot, lo);
    lower = at::where(gt, val, lower);
    up = at::where(gt, up, pivot);
    upper = at::where(gt, upper, val);
    pivot = at::where(gt, pivot + i, pivot - i);
    val = code.index({pivot});
  }
  upper = at::where(up == 255, code[255], upper);
  lower = at::where(lo == 0, code[0], lower);
  at::Tensor res = at::where(s > val, at::where(s > (upper + val) * 0.5, up, pivot),
                             at::where(s < (lower + val) * 0.5, lo, pivot));
  return res.to(at::kByte);
}

// Blocks of `block` along dim 1 of x [E, n] (zero padded): their absmax, and x scaled by
// bitsandbytes' reciprocal, both with FTZ.
std::pair<at::Tensor, at::Tensor> scale_blocks_t(const at::Tensor& x, int64_t block) {
  const int64_t E = x.size(0), n = x.size(1), nb = (n + block - 1) / block;
  at::Tensor b = at::constant_pad_nd(ftz_t(x), {0, nb * block - n}, 0).view({E, nb, block});
  at::Tensor amax = b.abs().amax(-1);
  return {amax, ftz_t(b * rcp_t(amax).unsqueeze(-1)).view({E, nb * block})};
}

std::pair<at::Tensor, at::Tensor> nested_t(const at::Tensor& absmax, const at::Tensor& offset) {
  auto [nested, s] = scale_blocks_t(absmax - offset.unsqueeze(1), bnb::kNestedBlock);
  return {dynamic_codes_t(s.narrow(1, 0, absmax.size(1))), nested};
}

// ---- shared by both paths -------------------------------------------------------------

// bitsandbytes' offset: `absmax.mean()` of each expert's own 1-D absmax, on its device
// (a batched mean over [E, blocks] can round differently).
at::Tensor offsets(const at::Tensor& absmax) {
  std::vector<at::Tensor> m;
  for (int64_t e = 0; e < absmax.size(0); ++e) m.push_back(absmax[e].mean());
  return at::stack(m);
}

std::pair<at::Tensor, at::Tensor> nested_kernel(const at::Tensor& absmax, const at::Tensor& offset) {
  const Layout l{absmax.size(0), absmax.size(1), 1};  // one "element" per absmax: blocks() == size(1)
  at::Tensor a = absmax.contiguous(), o = offset.contiguous();
  at::Tensor codes = at::empty(a.sizes(), a.options().dtype(at::kByte));
  at::Tensor nested = at::empty({l.experts, l.nested_blocks()}, a.options());
  if (a.is_cuda())
    bnb::bnb4_nested_cuda(a.data_ptr<float>(), o.data_ptr<float>(), l, codes.data_ptr<uint8_t>(),
                          nested.data_ptr<float>(), current_cuda_stream());
  else
    nested_cpu(a.data_ptr<float>(), o.data_ptr<float>(), l, codes.data_ptr<uint8_t>(), nested.data_ptr<float>());
  return {codes, nested};
}

class Bnb4Format : public QuantFormat {
 public:
  explicit Bnb4Format(bool nf4) : nf4_(nf4) {}
  std::string name() const override { return nf4_ ? "nf4" : "fp4"; }

  FormatTraits traits() const override {
    FormatTraits t;
    t.kind = ElementKind::Codebook;  // bitsandbytes' NF4 / FP4 tables, scaled by the block absmax
    t.bits = 4;
    t.block = 64;  // the default blocksize (block_size 0)
    t.block_scale = BlockScale::Float;
    t.sqnr_floor_db = 10.0;
    return t;
  }

  void validate(const std::vector<int64_t>& shape, const FormatParams& p) const override {
    if (shape.size() != 2 && shape.size() != 3)
      throw Error(name() + ": expected a 2D [out, in] weight or a 3D [E, out, in] stack, got " +
                  std::to_string(shape.size()) + "D");
    for (int64_t d : shape)
      if (d <= 0) throw Error(name() + ": weight has an empty dimension");
    const int64_t b = block_of(p);
    if (b < 32 || b > 4096 || (b & (b - 1)) != 0)
      throw Error(name() + ": block size " + std::to_string(b) +
                  " is not supported; bitsandbytes allows 32, 64, 128, 256, 512, 1024, 2048 or 4096");
  }

  QuantizedTensor quantize(const at::Tensor& w, const FormatParams& p,
                           const std::optional<at::Tensor>& amax) const override {
    prepare(w, p, amax);
    const at::Tensor w3 = to_3d(w);
    const WeightBatch b = as_batch(w3);
    const Layout l{b.experts, b.rows * b.cols, block_of(p)};
    const auto opts = w.options();
    at::Tensor q = at::empty({l.experts, l.bytes()}, opts.dtype(at::kByte));
    at::Tensor absmax = at::empty({l.experts, l.blocks()}, opts.dtype(at::kFloat));
    uint8_t* qp = q.data_ptr<uint8_t>();
    float* ap = absmax.data_ptr<float>();
    if (w.is_cuda()) {
      at::Tensor bad = at::zeros({1}, opts.dtype(at::kInt));
      bnb::bnb4_quantize_cuda(b, l, nf4_, qp, ap, bad.data_ptr<int>(), current_cuda_stream());
      if (bad.item<int>()) throw_non_finite(name());
    } else {
      const bool finite = dispatch_in_type(b.type, [&](auto in) {
        using In = decltype(in);
        return quantize_cpu<In>(static_cast<const typename In::T*>(b.data), l, nf4_, qp, ap);
      });
      if (!finite) throw_non_finite(name());
    }
    return finish(w, p, q, absmax, nested_kernel);
  }

  QuantizedTensor quantize_torch_ops(const at::Tensor& w, const FormatParams& p,
                                     const std::optional<at::Tensor>& amax) const override {
    prepare(w, p, amax);
    require_finite(w, name());
    const int64_t E = w.dim() == 3 ? w.size(0) : 1;
    const at::Tensor x = w.reshape({E, -1}).to(at::kFloat);
    const int64_t n = x.size(1), bytes = (n + 1) / 2;
    auto [absmax, s] = scale_blocks_t(x, block_of(p));
    at::Tensor c = codes4_t(s.narrow(1, 0, 2 * bytes), nf4_).view({E, bytes, 2});
    at::Tensor q = c.select(2, 0).bitwise_left_shift(4).bitwise_or(c.select(2, 1)).to(at::kByte);
    return finish(w, p, q, absmax, nested_t);
  }

  at::Tensor dequantize(const QuantizedTensor& q, at::ScalarType out) const override {
    const bool was_2d = q.shape.size() == 2;
    const int64_t E = was_2d ? 1 : q.shape[0], n = q.shape[q.shape.size() - 2] * q.shape.back();
    const int64_t block = block_of(q.params), nb = (n + block - 1) / block;
    const at::Tensor w = q.parts.at("weight").reshape({E, -1});
    at::Tensor codes = at::stack({w.bitwise_right_shift(4), w.bitwise_and(15)}, 2).view({E, -1}).narrow(1, 0, n);
    at::Tensor values = at::gather(q.parts.at("quant_map").reshape({-1, 16}).expand({E, 16}), 1, codes.to(at::kLong));
    // bitsandbytes' kernels take the FP4 sign from bit 3, so code 8 gives -0.0 (its table holds +0).
    if (!nf4_) values = at::where(codes >= 8, -values.abs(), values.abs());
    at::Tensor absmax;
    if (q.params.double_quant) {
      const at::Tensor c8 = q.parts.at("absmax").reshape({E, nb}).to(at::kLong);
      const at::Tensor map = q.parts.at("nested_quant_map").reshape({-1, 256}).expand({E, 256});
      const at::Tensor nested = q.parts.at("nested_absmax").reshape({E, -1});
      absmax = at::gather(map, 1, c8) * nested.repeat_interleave(bnb::kNestedBlock, 1).narrow(1, 0, nb) +
               q.parts.at("nested_offset").reshape({E, 1});
    } else {
      absmax = q.parts.at("absmax").reshape({E, nb});
    }
    at::Tensor deq = values * absmax.repeat_interleave(block, 1).narrow(1, 0, n);
    return deq.to(out).reshape(q.shape);
  }

  double bits_per_weight(const std::vector<int64_t>&, const FormatParams& p) const override {
    const double b = static_cast<double>(block_of(p));
    return p.double_quant ? 4.0 + 8.0 / b + 32.0 / (b * bnb::kNestedBlock) : 4.0 + 32.0 / b;
  }

 private:
  void prepare(const at::Tensor& w, const FormatParams& p, const std::optional<at::Tensor>& amax) const {
    if (amax) throw Error(name() + ": a given amax does not apply (bitsandbytes scales each block by its own absmax)");
    validate(w.sizes().vec(), p);
    check_weight(w, name(), 0);
  }

  // Parts from the packed codes [E, bytes] and float absmax [E, blocks].
  template <typename Nested>
  QuantizedTensor finish(const at::Tensor& w, const FormatParams& p, const at::Tensor& q, const at::Tensor& absmax,
                         Nested nested) const {
    const bool was_2d = w.dim() == 2;
    const int64_t E = q.size(0);
    auto per_expert = [&](const at::Tensor& t) { return was_2d ? t : t.unsqueeze(0).expand({E, t.size(0)}).contiguous(); };
    QuantizedTensor out;
    out.format = name();
    out.shape = w.sizes().vec();
    out.orig_dtype = w.scalar_type();
    out.params = p;
    out.parts["weight"] = like_input(q.unsqueeze(2), was_2d);
    out.parts["quant_map"] = per_expert(table(nf4_ ? kNf4Table : kFp4Table, 16, w.device()));
    if (!p.double_quant) {
      out.parts["absmax"] = like_input(absmax, was_2d);
      return out;
    }
    const at::Tensor off = offsets(absmax);
    auto [codes, nested_absmax] = nested(absmax, off);
    out.parts["absmax"] = like_input(codes, was_2d);
    out.parts["nested_absmax"] = like_input(nested_absmax, was_2d);
    out.parts["nested_quant_map"] = per_expert(table(kDynamicMap, 256, w.device()));
    out.parts["nested_offset"] = was_2d ? off.reshape({}) : off;
    return out;
  }

  bool nf4_;
};

class Nf4Format : public Bnb4Format {
 public:
  Nf4Format() : Bnb4Format(true) {}
};
class Fp4Format : public Bnb4Format {
 public:
  Fp4Format() : Bnb4Format(false) {}
};

// Python's repr() of a float, as json.dumps writes it: the shortest round-trip digits,
// positional for decimal exponents -5..15, else d.ddde[+-]XX.
std::string python_float_repr(double v) {
  if (std::isnan(v)) return "NaN";  // json.dumps' spelling of the non-finite floats
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, std::fabs(v), std::chars_format::scientific);
  std::string sci(buf, r.ptr);
  const size_t epos = sci.find('e');
  std::string digits = sci.substr(0, epos);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int decpt = std::stoi(sci.substr(epos + 1)) + 1;  // value = 0.DIGITS * 10^decpt
  const int nd = static_cast<int>(digits.size());
  std::string s;
  if (decpt <= -4 || decpt > 16) {
    s = digits.substr(0, 1) + (nd > 1 ? "." + digits.substr(1) : "");
    char e[16];
    std::snprintf(e, sizeof e, "e%c%02d", decpt - 1 < 0 ? '-' : '+', std::abs(decpt - 1));
    s += e;
  } else if (decpt <= 0) {
    s = "0." + std::string(-decpt, '0') + digits;
  } else if (decpt >= nd) {
    s = digits + std::string(decpt - nd, '0') + ".0";
  } else {
    s = digits.substr(0, decpt) + "." + digits.substr(decpt);
  }
  return (v < 0 ? "-" : "") + s;
}

std::string torch_dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    case at::kFloat: return "float32";
    default: throw Error(std::string("bitsandbytes quant state: unsupported dtype ") + c10::toString(t));
  }
}

}  // namespace

MOEQ_REGISTER(FormatPtr, "nf4", std::make_unique<Nf4Format>())
MOEQ_REGISTER(FormatPtr, "fp4", std::make_unique<Fp4Format>())

std::string bnb4_quant_state_json(const std::string& quant_type, int64_t block_size, at::ScalarType dtype,
                                  const std::vector<int64_t>& shape, std::optional<float> nested_offset) {
  std::string s = "{\"quant_type\": \"" + quant_type + "\", \"blocksize\": " + std::to_string(block_size) +
                  ", \"dtype\": \"" + torch_dtype_name(dtype) + "\", \"shape\": [";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  s += "]";
  if (nested_offset)
    s += ", \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": " +
         python_float_repr(static_cast<double>(*nested_offset));
  return s + "}";
}

std::string bnb4_quant_state_json(const QuantizedTensor& q, int64_t expert) {
  if (q.format != "nf4" && q.format != "fp4")
    throw Error("bitsandbytes quant state: format '" + q.format + "' is not nf4 or fp4");
  const bool stack = q.shape.size() == 3;
  if (expert < 0 || expert >= (stack ? q.shape[0] : 1))
    throw Error("bitsandbytes quant state: expert " + std::to_string(expert) + " out of range");
  std::optional<float> offset;
  if (q.params.double_quant) {
    const at::Tensor o = q.parts.at("nested_offset").to(at::kCPU).reshape({-1});
    offset = o[stack ? expert : 0].item<float>();
  }
  const std::vector<int64_t> shape(q.shape.end() - 2, q.shape.end());
  return bnb4_quant_state_json(q.format, block_of(q.params), q.orig_dtype, shape, offset);
}

at::Tensor bnb4_quant_state_tensor(const QuantizedTensor& q, int64_t expert) {
  const std::string s = bnb4_quant_state_json(q, expert);
  return at::from_blob(const_cast<char*>(s.data()), {static_cast<int64_t>(s.size())}, at::kByte).clone();
}

std::pair<at::Tensor, at::Tensor> bnb4_quantize_nested(const at::Tensor& absmax, const at::Tensor& offset) {
  if (absmax.dim() != 2 || absmax.scalar_type() != at::kFloat || offset.dim() != 1 ||
      offset.scalar_type() != at::kFloat || offset.size(0) != absmax.size(0) || offset.device() != absmax.device())
    throw Error("bnb4_quantize_nested: expected float32 absmax [E, blocks] and offset [E] on one device");
  return nested_kernel(absmax, offset);
}

}  // namespace moeq
