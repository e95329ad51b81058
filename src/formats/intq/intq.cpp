// INT4 / INT8 group-wise formats "int4" and "int8" (see intq.h for the math and the parts).
#include "formats/intq/intq.h"
#include "formats/intq/intq_eps.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "formats/cuda_stream.h"
#include "formats/format.h"
#include "formats/format_util.h"

namespace moeq {
namespace {

template <InType T>
struct HostT;
template <>
struct HostT<InType::BF16> {
  static float load(const void* p, int64_t i) { return bf16_bits_to_float(static_cast<const uint16_t*>(p)[i]); }
  float operator()(float v) const { return static_cast<float>(c10::BFloat16(v)); }
  static void store(void* p, int64_t i, float v) { static_cast<c10::BFloat16*>(p)[i] = c10::BFloat16(v); }
};
template <>
struct HostT<InType::F16> {
  static float load(const void* p, int64_t i) { return static_cast<float>(static_cast<const c10::Half*>(p)[i]); }
  float operator()(float v) const { return static_cast<float>(c10::Half(v)); }
  static void store(void* p, int64_t i, float v) { static_cast<c10::Half*>(p)[i] = c10::Half(v); }
};
template <>
struct HostT<InType::F32> {
  static float load(const void* p, int64_t i) { return static_cast<const float*>(p)[i]; }
  float operator()(float v) const { return v; }
  static void store(void* p, int64_t i, float v) { static_cast<float*>(p)[i] = v; }
};

// One task per group: min/max, scale and zero point, then whole packed words (a group
// holds a whole number of words). Zero points go to zp8 and are packed afterwards.
template <InType T>
int quantize_cpu_t(const WeightBatch& w, const IntqSpec& s, int32_t* packed, void* scales, int8_t* zp8) {
  using H = HostT<T>;
  const int epw = 32 / s.bits;
  const int64_t groups = w.numel() / s.group;
  const uint32_t off = 1u << (s.bits - 1);
  int bad = 0;
#pragma omp parallel for reduction(| : bad)
  for (int64_t gi = 0; gi < groups; ++gi) {
    const int64_t base = gi * s.group;
    float mn = 0.f, mx = 0.f;
    bool finite = true;
    for (int64_t i = 0; i < s.group; ++i) {
      const float v = H::load(w.data, base + i);
      finite &= std::fabs(v) <= std::numeric_limits<float>::max();
      mn = std::min(mn, v);
      mx = std::max(mx, v);
    }
    if (!finite) {
      bad |= kIntqNonFinite;
      continue;
    }
    const IntqGroup g = intq_group(mn, mx, s, H());
    if (!g.finite) bad |= kIntqScaleOverflow;
    H::store(scales, gi, g.scale);
    if (zp8) zp8[gi] = static_cast<int8_t>(g.zp);
    for (int64_t k = 0; k < s.group / epw; ++k) {
      uint32_t word = 0;
      for (int j = 0; j < epw; ++j) {
        const int q = intq_code(H::load(w.data, base + k * epw + j), g, s, H());
        word |= (static_cast<uint32_t>(q) + off) << (s.bits * j);
      }
      packed[base / epw + k] = static_cast<int32_t>(word);
    }
  }
  return bad;
}

// Zero points [E, out, ng] (int8) packed along `out`: [E, ceil(out/epw), ng].
void pack_zero_points_cpu(const int8_t* zp8, int64_t experts, int64_t out, int64_t ng, int bits, int32_t* dst) {
  const int epw = 32 / bits;
  const int64_t words = (out + epw - 1) / epw;
  const uint32_t off = 1u << (bits - 1);
#pragma omp parallel for collapse(2)
  for (int64_t e = 0; e < experts; ++e)
    for (int64_t k = 0; k < words; ++k)
      for (int64_t g = 0; g < ng; ++g) {
        uint32_t word = 0;
        for (int j = 0; j < epw && k * epw + j < out; ++j)
          word |= (static_cast<uint32_t>(zp8[(e * out + k * epw + j) * ng + g]) + off) << (bits * j);
        dst[(e * words + k) * ng + g] = static_cast<int32_t>(word);
      }
}

// Sum of disjoint bit fields (int64) -> the int32 with the same low 32 bits.
at::Tensor to_int32_bits(const at::Tensor& v) {
  return at::where(v >= (int64_t{1} << 31), v - (int64_t{1} << 32), v).to(at::kInt);
}

template <int Bits>
class IntqFormat : public QuantFormat {
  static constexpr int kEpw = 32 / Bits;
  static constexpr int64_t kOff = int64_t{1} << (Bits - 1);
  static constexpr double kQmin = -static_cast<double>(kOff), kQmax = static_cast<double>(kOff - 1);

 public:
  std::string name() const override { return Bits == 4 ? "int4" : "int8"; }

  FormatTraits traits() const override {
    FormatTraits t;
    t.kind = ElementKind::Int;
    t.bits = Bits;
    t.block = 128;  // the default group size (block_size 0)
    t.block_scale = BlockScale::Float;
    t.gptq = true;  // symmetric only (src/quant/gptq_job.cpp says so)
    t.sqnr_floor_db = Bits == 8 ? 25.0 : 10.0;
    return t;
  }

  static int64_t group_of(const FormatParams& p) { return p.block_size == 0 ? 128 : p.block_size; }

  void validate(const std::vector<int64_t>& shape, const FormatParams& p) const override {
    if (shape.size() != 2 && shape.size() != 3)
      throw Error(name() + ": expected a 2D [out, in] weight or a 3D [E, out, in] stack, got " +
                  std::to_string(shape.size()) + "D");
    const int64_t g = group_of(p), in = shape.back();
    if (g <= 0 || g % kEpw != 0 || in % g != 0)
      throw Error(name() + ": group size (block_size) " + std::to_string(g) + " must be a positive multiple of " +
                  std::to_string(kEpw) + " that divides the input dimension " + std::to_string(in) +
                  " (0 selects 128)");
  }

  QuantizedTensor quantize(const at::Tensor& w, const FormatParams& p, const std::optional<at::Tensor>& amax) const override {
    begin(w, p, amax);
    const bool was_2d = w.dim() == 2;
    const at::Tensor w3 = to_3d(w);
    const WeightBatch b = as_batch(w3);
    IntqSpec s{Bits, p.symmetric, group_of(p), intq_dtype_eps(w.scalar_type())};
    const int64_t ng = b.cols / s.group, zrows = (b.rows + kEpw - 1) / kEpw;
    const auto opts = w3.options();
    at::Tensor packed = at::empty({b.experts, b.rows, b.cols / kEpw}, opts.dtype(at::kInt));
    at::Tensor scale = at::empty({b.experts, b.rows, ng}, opts);
    at::Tensor zp;
    if (!s.symmetric) zp = at::zeros({b.experts, zrows, ng}, opts.dtype(at::kInt));
    int32_t* zp_ptr = s.symmetric ? nullptr : zp.data_ptr<int32_t>();
    int bad = 0;
    if (w.is_cuda()) {
#ifdef MOEQ_WITH_CUDA
      at::Tensor bad_t = at::zeros({1}, opts.dtype(at::kInt));
      intq_quantize_cuda(b, s, packed.data_ptr<int32_t>(), scale.data_ptr(), zp_ptr, bad_t.data_ptr<int>(),
                         current_cuda_stream());
      bad = bad_t.item<int>();
#else
      throw Error(name() + ": moeq was built without CUDA; move the weight to the CPU");
#endif
    } else {
      at::Tensor zp8 = s.symmetric ? at::Tensor() : at::empty({b.experts, b.rows, ng}, opts.dtype(at::kChar));
      int8_t* zp8_ptr = s.symmetric ? nullptr : zp8.data_ptr<int8_t>();
      int32_t* q = packed.data_ptr<int32_t>();
      switch (b.type) {
        case InType::BF16: bad = quantize_cpu_t<InType::BF16>(b, s, q, scale.data_ptr(), zp8_ptr); break;
        case InType::F16: bad = quantize_cpu_t<InType::F16>(b, s, q, scale.data_ptr(), zp8_ptr); break;
        case InType::F32: bad = quantize_cpu_t<InType::F32>(b, s, q, scale.data_ptr(), zp8_ptr); break;
      }
      if (!bad && zp8_ptr) pack_zero_points_cpu(zp8_ptr, b.experts, b.rows, ng, Bits, zp_ptr);
    }
    check_bad(bad, w.scalar_type());
    return finish(w, p, packed, scale, zp, was_2d);
  }

  QuantizedTensor quantize_torch_ops(const at::Tensor& w, const FormatParams& p,
                                     const std::optional<at::Tensor>& amax) const override {
    begin(w, p, amax);
    require_finite(w, name());
    const bool was_2d = w.dim() == 2;
    const int64_t group = group_of(p);
    const at::Tensor w3 = to_3d(w);
    const int64_t E = w3.size(0), out = w3.size(1), in = w3.size(2), ng = in / group;
    const at::Tensor x = w3.view({E, out, ng, group});  // in the weight dtype, as the reference computes
    // 0-d divisors on the weight's device: a CPU scalar would make CUDA multiply by a reciprocal.
    auto constant = [&](double v) { return at::full({}, v, w3.options()); };
    const at::Tensor mn = x.amin(-1).clamp_max(0), mx = x.amax(-1).clamp_min(0);
    const double range = static_cast<double>((1 << Bits) - 1);
    at::Tensor scale, zp;
    if (p.symmetric) {
      scale = at::maximum(mn.neg(), mx) / constant(range / 2);
    } else {
      scale = (mx - mn) / constant(range);
      zp = at::rsub(mn / scale, kQmin).clamp(kQmin, kQmax).nan_to_num(0.0).round();
    }
    check_bad(at::isfinite(scale).all().item<bool>() ? 0 : kIntqScaleOverflow, w.scalar_type());
    scale = at::where(scale == 0, constant(intq_dtype_eps(w.scalar_type())), scale);
    at::Tensor v = x / scale.unsqueeze(-1);
    if (!p.symmetric) v = v + zp.to(v.scalar_type()).unsqueeze(-1);
    const at::Tensor q = v.round().clamp(kQmin, kQmax).to(at::kLong).add(kOff).view({E, out, in / kEpw, kEpw});
    const at::Tensor shifts = at::arange(kEpw, q.options()) * Bits;
    const at::Tensor packed = to_int32_bits(at::bitwise_left_shift(q, shifts).sum(-1));
    at::Tensor zp_packed;
    if (!p.symmetric) {
      const int64_t zrows = (out + kEpw - 1) / kEpw;
      const at::Tensor z = at::constant_pad_nd(zp.to(at::kLong).add(kOff), {0, 0, 0, zrows * kEpw - out});
      zp_packed = to_int32_bits(at::bitwise_left_shift(z.view({E, zrows, kEpw, ng}), shifts.view({kEpw, 1})).sum(2));
    }
    return finish(w, p, packed, scale, zp_packed, was_2d);
  }

  // Given symmetric group scales (weight_scale of a quantize of the same shape: dtype T,
  // [.., out, in/group]), e.g. GPTQ's fixed grid: q = clamp(rint(rT(x / scale))), x in float32.
  QuantizedTensor quantize_with_block_scales(const at::Tensor& w, const FormatParams& p, const at::Tensor& amax,
                                             const at::Tensor& block_scales) const override {
    if (amax.defined()) throw Error(name() + ": a given amax does not apply (pass only the group scales)");
    if (!p.symmetric) throw Error(name() + ": given scales are supported for symmetric quantization only");
    check_weight(w, name(), 0);
    validate(w.sizes().vec(), p);
    require_finite(w, name());
    const bool was_2d = w.dim() == 2;
    const int64_t group = group_of(p);
    const at::Tensor w3 = to_3d(w).to(at::kFloat);
    const int64_t E = w3.size(0), out = w3.size(1), in = w3.size(2), ng = in / group;
    const at::Tensor sc = to_3d(block_scales);
    if (sc.sizes() != at::IntArrayRef({E, out, ng}) || !sc.is_floating_point())
      throw Error(name() + ": given scales must be floating point [" + std::to_string(E) + ", " + std::to_string(out) + ", " +
                  std::to_string(ng) + "] for this weight");
    if (!(at::isfinite(sc).all().item<bool>() && (sc > 0).all().item<bool>()))
      throw Error(name() + ": given scales must be finite and positive");
    const at::Tensor v = (w3.view({E, out, ng, group}) / sc.to(at::kFloat).unsqueeze(-1)).to(sc.scalar_type()).to(at::kFloat);
    const at::Tensor q = v.round().clamp(kQmin, kQmax).to(at::kLong).add(kOff).view({E, out, in / kEpw, kEpw});
    const at::Tensor shifts = at::arange(kEpw, q.options()) * Bits;
    const at::Tensor packed = to_int32_bits(at::bitwise_left_shift(q, shifts).sum(-1));
    QuantizedTensor r = finish(w, p, packed, sc.contiguous(), at::Tensor(), was_2d);
    r.orig_dtype = sc.scalar_type();
    return r;
  }

  at::Tensor dequantize(const QuantizedTensor& q, at::ScalarType out) const override {
    const at::Tensor& packed = q.parts.at("weight_packed");
    const at::Tensor scale = q.parts.at("weight_scale").to(at::kFloat);
    const int64_t rows = q.shape[q.shape.size() - 2], in = q.shape.back();
    const int64_t group = in / scale.size(-1);
    const at::Tensor shifts = at::arange(kEpw, packed.options()) * Bits;
    auto unpack = [&](const at::Tensor& words, int64_t dim) {  // codes along `dim`, minus the offset
      const at::Tensor s = dim == -1 ? shifts : shifts.view({kEpw, 1});
      at::Tensor c = at::bitwise_and(at::bitwise_right_shift(words.unsqueeze(dim), s), (1 << Bits) - 1);
      return c.flatten(dim - 1, dim).sub(kOff);
    };
    at::Tensor codes = unpack(packed, -1).to(at::kFloat);
    if (q.parts.count("weight_zero_point")) {
      const at::Tensor zp = unpack(q.parts.at("weight_zero_point"), -2).narrow(-2, 0, rows);
      codes = codes - zp.to(at::kFloat).repeat_interleave(group, -1);
    }
    return (codes * scale.repeat_interleave(group, -1)).to(out);
  }

  double bits_per_weight(const std::vector<int64_t>& shape, const FormatParams& p) const override {
    // Scales are stored in the weight dtype: counted as 16-bit (bf16/f16 checkpoints).
    const double g = static_cast<double>(group_of(p));
    return Bits + 16.0 / g + (p.symmetric ? 0.0 : Bits / g);
  }

 private:
  void begin(const at::Tensor& w, const FormatParams& p, const std::optional<at::Tensor>& amax) const {
    if (amax) throw Error(name() + ": a given amax does not apply (scales come from each group's min and max)");
    check_weight(w, name(), 0);
    validate(w.sizes().vec(), p);
  }

  void check_bad(int bad, at::ScalarType t) const {
    if (bad & kIntqNonFinite) throw_non_finite(name());
    if (bad & kIntqScaleOverflow)
      throw Error(name() + ": a group's range (max - min) overflows the scale dtype " + std::string(c10::toString(t)) +
                  "; quantize from a bf16 or f32 copy of the weight");
  }

  QuantizedTensor finish(const at::Tensor& w, const FormatParams& p, const at::Tensor& packed, const at::Tensor& scale,
                         const at::Tensor& zp, bool was_2d) const {
    QuantizedTensor out;
    out.format = name();
    out.shape = w.sizes().vec();
    out.orig_dtype = w.scalar_type();
    out.params = p;
    out.params.block_size = group_of(p);
    out.parts["weight_packed"] = like_input(packed, was_2d);
    out.parts["weight_scale"] = like_input(scale, was_2d);
    if (zp.defined()) out.parts["weight_zero_point"] = like_input(zp, was_2d);
    const int64_t E = was_2d ? 1 : w.size(0);
    at::Tensor shape = at::tensor({w.size(-2), w.size(-1)}, at::kLong).repeat({E, 1}).to(w.device());
    out.parts["weight_shape"] = like_input(shape, was_2d);
    return out;
  }
};

using Int4Format = IntqFormat<4>;
using Int8Format = IntqFormat<8>;

}  // namespace

MOEQ_REGISTER(FormatPtr, "int4", std::make_unique<Int4Format>())
MOEQ_REGISTER(FormatPtr, "int8", std::make_unique<Int8Format>())

}  // namespace moeq
