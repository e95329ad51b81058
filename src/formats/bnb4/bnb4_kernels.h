#pragma once
// bitsandbytes NF4/FP4 arithmetic shared by the CPU kernel (bnb4.cpp) and the CUDA kernels
// (bnb4.cu); plain C++, no ATen or CUDA types. See bnb4.h for the format.
//
// moeq reproduces bitsandbytes' CUDA kernels (kQuantizeBlockwise, built with --use_fast_math),
// which wrote the NF4/FP4 checkpoints in circulation. Observed from bitsandbytes 0.50.2 on
// an H200 (SASS and outputs, tests/data/bnb4_cuda_ref.safetensors):
//  - subnormal inputs and products count as zero (FTZ), also in the absmax;
//  - the scale is `1.0f / absmax` compiled to rcp.approx.ftz.f32, which differs from the
//    correctly rounded reciprocal by one ulp for 13% of mantissas: rcp_bnb() corrects
//    every absmax with at most 10 significant mantissa bits (all bf16 and f16 blocks);
//    other fp32 absmax values keep the correctly rounded reciprocal (a code can then differ
//    from the GPU's only when w/absmax lies within an ulp of a decision threshold);
//  - an all-zero block gives 0 * inf = NaN, which the threshold trees send to code 0
//    (NF4 -1.0, FP4 +0); an absmax above 2^126 has a reciprocal that flushes to 0;
//  - codes: 15 NF4 / 7 FP4 thresholds compared with `>`, so a tie goes to the lower code.
// bitsandbytes on CPU computes NF4/FP4 differently (pure torch bucketize: FP4 maps values
// in (0, 0.0026*absmax] to code 8 (-0) instead of 0, some thresholds sit an ulp away, no
// FTZ, an all-zero NF4 block gives code 7; its 8-bit nested absmax uses a lookup table).
#include <cstdint>
#include <cstring>

#include "formats/kernel_types.h"

namespace moeq::bnb {

// bitsandbytes' thresholds as float32 bit patterns (read from its SASS immediates).
#define MOEQ_BNB_NF4_THRESHOLDS                                                                          \
  {0xbf591cd9u, 0xbf1c5270u, 0xbeeb8480u, 0xbeadea76u, 0xbe703cecu, 0xbe0d38bcu, 0xbd3a7871u, 0x3d22faffu, \
   0x3df64863u, 0x3e5067e0u, 0x3e9582d4u, 0x3ec753f9u, 0x3f006d03u, 0x3f248dafu, 0x3f5c89d9u}
#define MOEQ_BNB_FP4_THRESHOLDS {0x3b2aaab9u, 0x3db00000u, 0x3e555555u, 0x3e955555u, 0x3ed55556u, 0x3f155550u, 0x3f555555u}
// Code tables (get_4bit_type('nf4'|'fp4')), index = code.
#define MOEQ_BNB_NF4_TABLE                                                                               \
  {0xbf800000u, 0xbf3239b1u, 0xbf066b30u, 0xbeca32a0u, 0xbe91a24du, 0xbe3d353fu, 0xbdba7871u, 0x00000000u, \
   0x3da2faffu, 0x3e24cae3u, 0x3e7c04ddu, 0x3ead033au, 0x3ee1a4b8u, 0x3f1007abu, 0x3f3913b3u, 0x3f800000u}
#define MOEQ_BNB_FP4_TABLE                                                                               \
  {0x00000000u, 0x3baaaaabu, 0x3f2aaaabu, 0x3f800000u, 0x3eaaaaabu, 0x3f000000u, 0x3e2aaaabu, 0x3e800000u, \
   0x00000000u, 0xbbaaaaabu, 0xbf2aaaabu, 0xbf800000u, 0xbeaaaaabu, 0xbf000000u, 0xbe2aaaabu, 0xbe800000u}
// rcp.approx.ftz.f32 minus the correctly rounded reciprocal, +1 or -1 ulp, for the mantissas
// m = bits[22:13] of an absmax whose bits[12:0] are zero (bit m of these 1024-bit sets);
// measured over all 2^23 mantissas on an H200, independent of the exponent.
#define MOEQ_BNB_RCP_PLUS                                                                                \
  {0x00160800u, 0x00010000u, 0x08000000u, 0x00020306u, 0x02180400u, 0x00000000u, 0x00021800u, 0x10000006u, \
   0x00000010u, 0x00030500u, 0x04000000u, 0x00080000u, 0x03081804u, 0x00800202u, 0x00080462u, 0x0a040102u, \
   0x80090380u, 0x00180008u, 0x00000000u, 0x00080000u, 0x08000d80u, 0x30008018u, 0x01100000u, 0x00000000u, \
   0x002e0000u, 0x008020a0u, 0x00000000u, 0x20005500u, 0x09000000u, 0x00010001u, 0x18000100u, 0x00000020u}
#define MOEQ_BNB_RCP_MINUS                                                                               \
  {0x00004040u, 0x40004001u, 0x01c02040u, 0xc0000000u, 0x00000080u, 0x00090001u, 0x28400000u, 0x00000000u, \
   0x80040000u, 0x00000000u, 0x20000020u, 0x00000000u, 0x80020000u, 0x28000000u, 0x06000000u, 0x00000000u, \
   0x00000000u, 0x00004000u, 0x00000000u, 0x00000040u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00008000u, \
   0x00008000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x34400000u, 0x00000020u, 0x01040000u}
// The signed 8-bit dynamic map of the nested absmax (create_dynamic_map()), sorted.
#define MOEQ_BNB_DYNAMIC_MAP                                                                             \
  {0xbf7e3333u, 0xbf7a999au, 0xbf770000u, 0xbf736666u, 0xbf6fcccdu, 0xbf6c3333u, 0xbf68999au, 0xbf650000u, \
   0xbf616666u, 0xbf5dcccdu, 0xbf5a3333u, 0xbf56999au, 0xbf530000u, 0xbf4f6666u, 0xbf4bcccdu, 0xbf483333u, \
   0xbf44999au, 0xbf410000u, 0xbf3d6666u, 0xbf39cccdu, 0xbf363334u, 0xbf32999au, 0xbf2f0000u, 0xbf2b6666u, \
   0xbf27cccdu, 0xbf243334u, 0xbf20999au, 0xbf1d0000u, 0xbf196666u, 0xbf15cccdu, 0xbf123334u, 0xbf0e999au, \
   0xbf0b0000u, 0xbf076666u, 0xbf03ccccu, 0xbf003333u, 0xbef93332u, 0xbef20000u, 0xbeeaccccu, 0xbee3999au, \
   0xbedc6666u, 0xbed53333u, 0xbece0000u, 0xbec6ccccu, 0xbebf999au, 0xbeb86666u, 0xbeb13333u, 0xbeaa0000u, \
   0xbea2ccccu, 0xbe9b999au, 0xbe946666u, 0xbe8d3334u, 0xbe860000u, 0xbe7d9999u, 0xbe6f3333u, 0xbe60cccdu, \
   0xbe526666u, 0xbe440000u, 0xbe35999au, 0xbe273333u, 0xbe18cccdu, 0xbe0a6666u, 0xbdf80000u, 0xbddb3334u, \
   0xbdc9eb85u, 0xbdc428f7u, 0xbdbe6667u, 0xbdb8a3d7u, 0xbdb2e148u, 0xbdad1eb8u, 0xbda75c2au, 0xbda1999au, \
   0xbd9bd70au, 0xbd96147bu, 0xbd9051ebu, 0xbd8a8f5du, 0xbd84cccdu, 0xbd7e147bu, 0xbd728f5du, 0xbd670a3du, \
   0xbd5b851fu, 0xbd500000u, 0xbd447ae1u, 0xbd38f5c3u, 0xbd2d70a3u, 0xbd21eb85u, 0xbd166667u, 0xbd0ae148u, \
   0xbcfeb852u, 0xbce7ae15u, 0xbcd0a3d7u, 0xbcb9999au, 0xbca28f5du, 0xbc8b851fu, 0xbc68f5c3u, 0xbc3ae148u, \
   0xbc1f3b64u, 0xbc160418u, 0xbc0ccccdu, 0xbc039581u, 0xbbf4bc6au, 0xbbe24dd3u, 0xbbcfdf3bu, 0xbbbd70a4u, \
   0xbbab020du, 0xbb989374u, 0xbb8624ddu, 0xbb676c8au, 0xbb428f5cu, 0xbb1db22du, 0xbaf1a9fcu, 0xbaa7ef9du, \
   0xba7765ffu, 0xba59e83eu, 0xba3c6a80u, 0xba1eecc1u, 0xba016f01u, 0xb9c7e283u, 0xb98ce705u, 0xb923d70bu, \
   0xb8ba1f4bu, 0xb88aefb3u, 0xb8378034u, 0xb7b24206u, 0xb70205ffu, 0xb65a1a94u, 0xb513a3b7u, 0x00000000u, \
   0x3513a3b7u, 0x365a1a94u, 0x370205ffu, 0x37b24206u, 0x38378034u, 0x388aefb3u, 0x38ba1f4bu, 0x3923d70bu, \
   0x398ce705u, 0x39c7e283u, 0x3a016f01u, 0x3a1eecc1u, 0x3a3c6a80u, 0x3a59e83eu, 0x3a7765ffu, 0x3aa7ef9du, \
   0x3af1a9fcu, 0x3b1db22du, 0x3b428f5cu, 0x3b676c8au, 0x3b8624ddu, 0x3b989374u, 0x3bab020du, 0x3bbd70a4u, \
   0x3bcfdf3bu, 0x3be24dd3u, 0x3bf4bc6au, 0x3c039581u, 0x3c0ccccdu, 0x3c160418u, 0x3c1f3b64u, 0x3c3ae148u, \
   0x3c68f5c3u, 0x3c8b851fu, 0x3ca28f5du, 0x3cb9999au, 0x3cd0a3d7u, 0x3ce7ae15u, 0x3cfeb852u, 0x3d0ae148u, \
   0x3d166667u, 0x3d21eb85u, 0x3d2d70a3u, 0x3d38f5c3u, 0x3d447ae1u, 0x3d500000u, 0x3d5b851fu, 0x3d670a3du, \
   0x3d728f5du, 0x3d7e147bu, 0x3d84cccdu, 0x3d8a8f5du, 0x3d9051ebu, 0x3d96147bu, 0x3d9bd70au, 0x3da1999au, \
   0x3da75c2au, 0x3dad1eb8u, 0x3db2e148u, 0x3db8a3d7u, 0x3dbe6667u, 0x3dc428f7u, 0x3dc9eb85u, 0x3ddb3334u, \
   0x3df80000u, 0x3e0a6666u, 0x3e18cccdu, 0x3e273333u, 0x3e35999au, 0x3e440000u, 0x3e526666u, 0x3e60cccdu, \
   0x3e6f3333u, 0x3e7d9999u, 0x3e860000u, 0x3e8d3334u, 0x3e946666u, 0x3e9b999au, 0x3ea2ccccu, 0x3eaa0000u, \
   0x3eb13333u, 0x3eb86666u, 0x3ebf999au, 0x3ec6ccccu, 0x3ece0000u, 0x3ed53333u, 0x3edc6666u, 0x3ee3999au, \
   0x3eeaccccu, 0x3ef20000u, 0x3ef93332u, 0x3f003333u, 0x3f03ccccu, 0x3f076666u, 0x3f0b0000u, 0x3f0e999au, \
   0x3f123334u, 0x3f15cccdu, 0x3f196666u, 0x3f1d0000u, 0x3f20999au, 0x3f243334u, 0x3f27cccdu, 0x3f2b6666u, \
   0x3f2f0000u, 0x3f32999au, 0x3f363334u, 0x3f39cccdu, 0x3f3d6666u, 0x3f410000u, 0x3f44999au, 0x3f483333u, \
   0x3f4bcccdu, 0x3f4f6666u, 0x3f530000u, 0x3f56999au, 0x3f5a3333u, 0x3f5dcccdu, 0x3f616666u, 0x3f650000u, \
   0x3f68999au, 0x3f6c3333u, 0x3f6fcccdu, 0x3f736666u, 0x3f770000u, 0x3f7a999au, 0x3f7e3333u, 0x3f800000u}

constexpr int kNestedBlock = 256;  // bitsandbytes' blocksize for the nested absmax

// The tables a kernel needs, as float32 bit patterns (host arrays or __constant__ copies).
struct Tables {
  const uint32_t* nf4_thresholds;  // 15
  const uint32_t* fp4_thresholds;  // 7
  const uint32_t* rcp_plus;        // 32 words
  const uint32_t* rcp_minus;       // 32 words
  const uint32_t* dynamic_map;     // 256
};

MOEQ_HD inline uint32_t f2u(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
MOEQ_HD inline float u2f(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// Flush-to-zero: subnormals become +0 (the sign of a flushed zero never reaches a code).
MOEQ_HD inline float ftz(float x) { return (f2u(x) & 0x7f800000u) == 0 ? 0.f : x; }

// bitsandbytes' `1.0f / absmax` (rcp.approx.ftz.f32); absmax >= 0, already flushed.
MOEQ_HD inline float rcp_bnb(float a, const Tables& t) {
  float r = 1.0f / a;  // +inf for 0
  const uint32_t ab = f2u(a);
  if (a > 0.f && (ab & 0x1fffu) == 0) {
    const uint32_t m = (ab >> 13) & 0x3ffu;
    const uint32_t bit = 1u << (m & 31);
    if (t.rcp_plus[m >> 5] & bit) r = u2f(f2u(r) + 1);
    else if (t.rcp_minus[m >> 5] & bit) r = u2f(f2u(r) - 1);
  }
  return ftz(r);
}

// Number of thresholds below x, i.e. bitsandbytes' comparison tree; NaN gives 0.
MOEQ_HD inline uint8_t nf4_code(float x, const Tables& t) {
  int c = 0;
  for (int i = 0; i < 15; ++i) c += x > u2f(t.nf4_thresholds[i]);
  return static_cast<uint8_t>(c);
}

// FP4: sign bit 8 when x < 0 (not for -0 or NaN), magnitude code from |x|'s bucket.
MOEQ_HD inline uint8_t fp4_code(float x, const Tables& t) {
  const float a = x < 0.f ? -x : x;
  int c = 0;
  for (int i = 0; i < 7; ++i) c += a > u2f(t.fp4_thresholds[i]);
  // bucket -> E2M1-like code: 0, 0.0625, 2, 3, 4, 6, 8, 12 (x 1/12) are 0,1,6,7,4,5,2,3
  const uint8_t mag = static_cast<uint8_t>((0x32547610u >> (4 * c)) & 0xfu);
  return static_cast<uint8_t>(mag | (x < 0.f ? 8 : 0));
}

// nf4_code / fp4_code as binary searches (4 / 3 comparisons instead of 15 / 7) over the
// thresholds as floats t[15] / t[7] (ascending): the count of thresholds below x, bit by bit.
// The same codes for every x (NaN: every `x > t` is false either way).
MOEQ_HD inline uint8_t nf4_code_search(float x, const float* t) {
  const bool b3 = x > t[7];
  const bool b2 = x > (b3 ? t[11] : t[3]);
  const float l3_hi = b3 ? t[13] : t[5], l3_lo = b3 ? t[9] : t[1];
  const bool b1 = x > (b2 ? l3_hi : l3_lo);
  const float l4_a = b3 ? t[14] : t[6], l4_b = b3 ? t[12] : t[4], l4_c = b3 ? t[10] : t[2], l4_d = b3 ? t[8] : t[0];
  const float l4_hi = b2 ? l4_a : l4_c, l4_lo = b2 ? l4_b : l4_d;
  const bool b0 = x > (b1 ? l4_hi : l4_lo);
  return static_cast<uint8_t>((b3 ? 8 : 0) | (b2 ? 4 : 0) | (b1 ? 2 : 0) | (b0 ? 1 : 0));
}

MOEQ_HD inline uint8_t fp4_code_search(float x, const float* t) {
  const float a = x < 0.f ? -x : x;
  const bool b2 = a > t[3];
  const bool b1 = a > (b2 ? t[5] : t[1]);
  const bool b0 = a > (b2 ? (b1 ? t[6] : t[4]) : (b1 ? t[2] : t[0]));
  const int c = (b2 ? 4 : 0) | (b1 ? 2 : 0) | (b0 ? 1 : 0);
  const uint8_t mag = static_cast<uint8_t>((0x32547610u >> (4 * c)) & 0xfu);
  return static_cast<uint8_t>(mag | (x < 0.f ? 8 : 0));
}

// The 4-bit code of a scaled value s = ftz(w * rcp): NF4 (nf4=true) or FP4.
MOEQ_HD inline uint8_t code4(float s, bool nf4, const Tables& t) { return nf4 ? nf4_code(s, t) : fp4_code(s, t); }

// bitsandbytes' dQuantize<0>: a 7-step binary search over the sorted 256-entry map, then
// the nearer neighbour by midpoint (strict comparisons, so the exact order matters).
MOEQ_HD inline uint8_t dynamic_code(float x, const Tables& t) {
  const uint32_t* code = t.dynamic_map;
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = -1.0f, upper = 1.0f;
  float val = u2f(code[pivot]);
  for (int i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lower_pivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upper_pivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = u2f(code[pivot]);
  }
  if (upper_pivot == 255) upper = u2f(code[upper_pivot]);
  if (lower_pivot == 0) lower = u2f(code[lower_pivot]);
  if (x > val) {
    const float mid = (upper + val) * 0.5f;
    return static_cast<uint8_t>(x > mid ? upper_pivot : pivot);
  }
  const float mid = (lower + val) * 0.5f;
  return static_cast<uint8_t>(x < mid ? lower_pivot : pivot);
}

// Layout of a batch: every expert is quantized as bitsandbytes quantizes one flat tensor of
// n = rows * cols elements: ceil(n / block) blocks (the last one may be short), ceil(n / 2)
// bytes with element 2j in the high nibble of byte j (an odd n pads one zero).
struct Layout {
  int64_t experts = 1, n = 0, block = 64;
  MOEQ_HD int64_t blocks() const { return (n + block - 1) / block; }
  MOEQ_HD int64_t bytes() const { return (n + 1) / 2; }
  MOEQ_HD int64_t nested_blocks() const { return (blocks() + kNestedBlock - 1) / kNestedBlock; }
};

// CUDA launchers (bnb4.cu). q: experts * bytes(); absmax: experts * blocks(); *bad (device
// int) is set on NaN/Inf input.
void bnb4_quantize_cuda(const WeightBatch& w, const Layout& l, bool nf4, uint8_t* q, float* absmax, int* bad,
                        void* stream);
// Nested 8-bit absmax: codes (experts * blocks()) and nested_absmax (experts * nested_blocks())
// of absmax - offset[e].
void bnb4_nested_cuda(const float* absmax, const float* offset, const Layout& l, uint8_t* codes,
                      float* nested_absmax, void* stream);
// The GPU's rcp.approx.ftz.f32 of n floats (for the test that checks rcp_bnb's table).
void rcp_approx_cuda(const float* in, float* out, int64_t n, void* stream);

}  // namespace moeq::bnb
