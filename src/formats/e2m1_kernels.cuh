#pragma once
// Device helpers for the E2M1 block kernels (NVFP4, MXFP4): one thread per scale block
// reads its N consecutive inputs with 16-byte loads, and stores its packed codes whole.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "formats/kernel_types.h"

namespace moeq {

template <InType T>
__device__ __forceinline__ float decode_in(uint32_t bits) {
  if constexpr (T == InType::BF16) return __uint_as_float(bits << 16);
  else if constexpr (T == InType::F16) return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
  else return __uint_as_float(bits);
}

// x[0..N) = inputs [start, start + N) as floats. aligned: the data pointer is 16-byte
// aligned (then every block is, since N * element size is a multiple of 16).
template <InType T, int N>
__device__ __forceinline__ void load_block(const void* data, int64_t start, bool aligned, float* x) {
  constexpr int kSize = T == InType::F32 ? 4 : 2;
  if (aligned) {
    constexpr int kVec = N * kSize / 16;
    const uint4* p = reinterpret_cast<const uint4*>(static_cast<const char*>(data) + start * kSize);
#pragma unroll
    for (int v = 0; v < kVec; ++v) {
      const uint4 u = p[v];
      const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if constexpr (kSize == 4) {
          x[v * 4 + j] = decode_in<T>(w[j]);
        } else {
          x[v * 8 + 2 * j] = decode_in<T>(w[j] & 0xFFFFu);
          x[v * 8 + 2 * j + 1] = decode_in<T>(w[j] >> 16);
        }
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) {
      const uint32_t bits = kSize == 4 ? static_cast<const uint32_t*>(data)[start + i]
                                       : static_cast<const uint16_t*>(data)[start + i];
      x[i] = decode_in<T>(bits);
    }
  }
}

// max(|x[i]|) that is NaN when one x[i] is NaN (PTX max.NaN), so `<= FLT_MAX` is the
// block's finiteness check too; for finite blocks it equals the reference's abs-max.
__device__ __forceinline__ float absmax_nan(const float* x, int n) {
  float m = 0.f;
#pragma unroll
  for (int i = 0; i < n; ++i) asm("max.NaN.f32 %0, %1, %2;" : "=f"(m) : "f"(m), "f"(fabsf(x[i])));
  return m;
}

__device__ __forceinline__ float max_nan(float a, float b) {
  float m;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(m) : "f"(a), "f"(b));
  return m;
}

__device__ __forceinline__ float min_nan(float a, float b) {
  float m;
  asm("min.NaN.f32 %0, %1, %2;" : "=f"(m) : "f"(a), "f"(b));
  return m;
}

// absmax_nan over chunks [first, chunks) step `stride` of 8 elements from data + base (16-byte
// aligned), each thread keeping 4 loads in flight.
template <InType T>
__device__ __forceinline__ float chunk_absmax_nan(const void* data, int64_t base, int64_t chunks, int64_t first,
                                                  int64_t stride) {
  constexpr int kLoads = 4;
  float m = 0.f;
  for (int64_t c = first; c < chunks; c += kLoads * stride) {
    float x[kLoads][8];
#pragma unroll
    for (int k = 0; k < kLoads; ++k) {
      if (c + k * stride < chunks) {
        load_block<T, 8>(data, base + (c + k * stride) * 8, true, x[k]);
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) x[k][j] = 0.f;
      }
    }
#pragma unroll
    for (int k = 0; k < kLoads; ++k) m = max_nan(m, absmax_nan(x[k], 8));
  }
  return m;
}

__device__ __forceinline__ bool all_finite(const float* x, int n) {
  bool ok = true;
  for (int i = 0; i < n; ++i) ok &= isfinite(x[i]);
  return ok;
}

// Launch shape for one thread per scale block over the whole stack.
inline unsigned grid_for(int64_t blocks, int threads) {
  const int64_t g = (blocks + threads - 1) / threads;
  return static_cast<unsigned>(g < 1 ? 1 : (g > (1 << 20) ? (1 << 20) : g));
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace moeq
