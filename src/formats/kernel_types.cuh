#pragma once
#include <cstdint>
// Device helpers shared by the CUDA format kernels.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "formats/kernel_types.h"

namespace moeq {

__device__ __forceinline__ float load_elem(const WeightBatch& w, int64_t i) {
  switch (w.type) {
    case InType::BF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(w.data)[i]);
    case InType::F16: return __half2float(static_cast<const __half*>(w.data)[i]);
    default: return static_cast<const float*>(w.data)[i];
  }
}

// Max over the block (blockDim.x a multiple of 32, at most 1024); result valid in thread 0.
__device__ __forceinline__ float block_max(float v) {
  __shared__ float warp_max[32];
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_max[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < (blockDim.x >> 5) ? warp_max[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  }
  return v;
}

// atomicMax for non-negative floats: their bit patterns order like ints.
__device__ __forceinline__ void atomic_max_nonneg(float* addr, float v) {
  atomicMax(reinterpret_cast<int*>(addr), __float_as_int(v));
}

}  // namespace moeq
