#pragma once
// MXFP4 per the OCP Microscaling Formats (MX) Specification v1.0, section 6.3 (conversion
// of a block of k = 32 scalars to an MX block), element E2M1 (emax_elem = 2), scale E8M0:
//   shared_exp = floor(log2(max |x_i|)) - 2,  X = 2^shared_exp,  P_i = E2M1(x_i / X)
// Choices the spec leaves open, and what moeq does:
//  - floor(log2(amax)) is taken exactly from the float's exponent bits (a float log2 can
//    round up to the next integer just below a power of two);
//  - an all-zero block has no log2: it gets the smallest scale, E8M0 0x00 (2^-127), as the
//    spec authors' reference code (microsoft/microxcaling) and ModelOpt's MXFP4QTensor do;
//  - shared_exp below -127 is raised to -127 (the E8M0 minimum); the elements then round
//    to 0. Above 127 cannot happen for finite fp32 inputs (at most 127 - 2). 0xFF (NaN) is
//    never written;
//  - element rounding is roundTiesToEven, saturating to +-6 ("clamping normal numbers");
//  - the sign bit is IEEE's: -0.0 and negatives that round to zero get code 8 (-0).
// Parts: weight U8 [.., out, in/2] (even element in the low nibble; the same bytes as
// gpt-oss `*_blocks` [E, out, in/32, 16]); weight_scale U8 [.., out, in/32] (biased E8M0,
// 127 = 2^0; gpt-oss `*_scales`). Dequantize: E2M1 value * 2^(scale - 127).
#include <cmath>
#include <cstdint>

#include "formats/e2m1.h"
#include "formats/e2m1_fast.h"
#include "formats/kernel_types.h"

namespace moeq {

constexpr int64_t kMxfp4Block = 32;

// shared_exp of a block with this (finite, non-negative) amax, in [-127, 125].
MOEQ_HD inline int mxfp4_shared_exp(float amax) {
  const uint32_t u = float_bits(amax);
  const int be = static_cast<int>(u >> 23);
  int fl;  // floor(log2(amax))
  if (be > 0) {
    fl = be - 127;
  } else {
    const uint32_t m = u & 0x7FFFFFu;
    if (m == 0) return -127;  // all-zero block
    int top = 22;             // subnormal: 2^-149 times m, so the top set bit's position - 149
    while (!(m >> top)) --top;
    fl = top - 149;
  }
  const int e = fl - 2;
  return e < -127 ? -127 : e;
}

// One block of 32 values: its E8M0 byte and 16 packed bytes.
MOEQ_HD inline void mxfp4_block(const float* x, uint8_t* scale_out, uint8_t* packed) {
  float bmax = 0.f;
  for (int i = 0; i < 32; ++i) {
    const float a = x[i] < 0.f ? -x[i] : x[i];
    bmax = a > bmax ? a : bmax;
  }
  const int e = mxfp4_shared_exp(bmax);
  *scale_out = static_cast<uint8_t>(e + 127);
  // x / 2^e == x * 2^-e exactly (2^-e is a normal float for e in [-127, 125]).
  const float inv = bits_float(static_cast<uint32_t>(127 - e) << 23);
  for (int i = 0; i < 32; i += 2) {
    const float v0 = x[i] * inv, v1 = x[i + 1] * inv;
    packed[i / 2] = e2m1_pack(e2m1_code(v0, float_bits(v0) >> 31), e2m1_code(v1, float_bits(v1) >> 31));
  }
}

// mxfp4_block for the CUDA kernel: the same bytes (codes as two little-endian words x 2), the
// abs-max given (bmax: NaN-propagating on the device, the same value for finite blocks),
// E2M1 rounding with one FMA (e2m1_index_exact; v = x * 2^-e is exact, and its sign bit is x's).
MOEQ_HD inline uint8_t mxfp4_codes_fast(const float* x, float bmax, uint32_t* words) {
  const int e = mxfp4_shared_exp(bmax);
  const float inv = bits_float(static_cast<uint32_t>(127 - e) << 23);
  for (int w = 0; w < 4; ++w) {
    uint32_t acc = 0;
    for (int i = 0; i < 8; ++i) {
      const float xi = x[8 * w + i];
      const uint32_t code = (float_bits(xi) >> 31 << 3) | e2m1_index_exact(std::fabs(xi) * inv);
      acc |= code << (4 * i);
    }
    words[w] = acc;
  }
  return static_cast<uint8_t>(e + 127);
}

// CUDA: one launch for the stack; q numel/2 bytes, scales numel/32 bytes; sets *bad (device
// int) when an element is NaN or Inf.
void mxfp4_quantize_cuda(const WeightBatch& w, uint8_t* q, uint8_t* scales, int* bad, void* stream);

}  // namespace moeq
