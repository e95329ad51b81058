#pragma once
// Group-wise integer weights, INT4 / INT8 (W4A16 / W8A16), as compressed-tensors 0.20.0
// computes and packs them for llm-compressor checkpoints (pack-quantized format).
// Per group of `group` inputs, in the weight's own dtype T (bf16/f16/f32; rT = round to T):
//   mn = min(group min, 0), mx = max(group max, 0)
//   symmetric:  scale = rT(max(-mn, mx) / ((2^b - 1) / 2)), zp = 0
//   asymmetric: scale = rT(rT(mx - mn) / (2^b - 1)), zp = rint(clamp(rT(qmin - rT(mn / scale)), qmin, qmax))
//               (a NaN zero point, from 0 / 0, becomes 0 as in the reference's int8 cast)
//   a zero scale becomes eps(T) after the zero point is computed
//   q = clamp(rint(rT(rT(x / scale) + zp)), qmin, qmax), qmin = -2^(b-1), qmax = 2^(b-1) - 1
// rint is round half to even. Parts ([E] leading for stacks):
//   weight_packed int32 [.., out, in*b/32]: element i of a row at bit b*(i % (32/b)) of word
//     i / (32/b), stored as q + 2^(b-1)
//   weight_scale T [.., out, in/group]
//   weight_zero_point int32 [.., ceil(out*b/32), in/group] (asymmetric only): zp + 2^(b-1)
//     packed the same way along the OUTPUT dim
//   weight_shape int64 [2] = {out, in} ([E, 2] for stacks)
#include <math.h>
#include <cstdint>

#include "formats/kernel_types.h"

namespace moeq {

struct IntqSpec {
  int bits = 4;
  bool symmetric = true;
  int64_t group = 128;
  float eps = 0.f;  // eps of the weight dtype, replaces a zero scale
};

struct IntqGroup {
  float scale = 1.f;
  float zp = 0.f;
  bool finite = true;  // false when the scale overflowed T (f16 with max - min > 65504)
};

// The group's scale and zero point from its min and max, rounding through T with rt.
template <class RoundT>
MOEQ_HD inline IntqGroup intq_group(float mn, float mx, const IntqSpec& s, RoundT rt) {
  const float qmin = -static_cast<float>(1 << (s.bits - 1));
  const float qmax = static_cast<float>((1 << (s.bits - 1)) - 1);
  const float range = static_cast<float>((1 << s.bits) - 1);
  mn = fminf(mn, 0.f);
  mx = fmaxf(mx, 0.f);
  IntqGroup g;
  float scale;
  if (s.symmetric) {
    scale = rt(fmaxf(-mn, mx) / (range * 0.5f));
  } else {
    scale = rt(rt(mx - mn) / range);
    const float zpf = rt(qmin - rt(mn / scale));
    g.zp = zpf != zpf ? 0.f : rintf(fminf(fmaxf(zpf, qmin), qmax));
  }
  g.finite = scale - scale == 0.f;
  g.scale = scale == 0.f ? s.eps : scale;
  return g;
}

// The signed code of one element from its quotient x / g.scale (correctly rounded).
template <class RoundT>
MOEQ_HD inline int intq_code_of_quotient(float quotient, const IntqGroup& g, const IntqSpec& s, RoundT rt) {
  const float qmin = -static_cast<float>(1 << (s.bits - 1));
  const float qmax = static_cast<float>((1 << (s.bits - 1)) - 1);
  float v = rt(quotient);
  if (!s.symmetric) v = rt(v + g.zp);
  return static_cast<int>(fminf(fmaxf(rintf(v), qmin), qmax));
}

// The signed code of one element.
template <class RoundT>
MOEQ_HD inline int intq_code(float x, const IntqGroup& g, const IntqSpec& s, RoundT rt) {
  return intq_code_of_quotient(x / g.scale, g, s, rt);
}

// Error bits the kernels OR into *bad.
constexpr int kIntqNonFinite = 1;     // NaN/Inf in the weight
constexpr int kIntqScaleOverflow = 2;  // a scale is not finite in the weight dtype

// scales: E*out*in/group elements of the input dtype. zp_packed: zero-filled, or null when
// symmetric. *bad (device int, zeroed) gets the error bits above.
void intq_quantize_cuda(const WeightBatch& w, const IntqSpec& s, int32_t* packed, void* scales, int32_t* zp_packed,
                        int* bad, void* stream);

}  // namespace moeq
