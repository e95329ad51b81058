// CUDA kernel for the int4 / int8 group-wise formats (math and layout in intq.h).
// One warp per group, grid-stride over all groups of the [E, out, in] stack (one launch).
// Lane l holds elements l, l+32, ... of its group in registers (up to kCached per lane;
// larger groups re-read the rest from L1/L2), reduces min/max over the warp, then packs
// 32/b consecutive codes into a word with an OR across neighbouring lanes.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "formats/cuda_check.h"
#include "formats/intq.h"
#include "formats/kernel_types.cuh"

namespace moeq {
namespace {

constexpr int kCached = 8;  // elements per lane kept in registers: groups up to 256

struct DeviceRound {
  InType t;
  __host__ __device__ float operator()(float v) const {
    switch (t) {
      case InType::BF16: return __bfloat162float(__float2bfloat16_rn(v));
      case InType::F16: return __half2float(__float2half_rn(v));
      default: return v;
    }
  }
};

__device__ void store_scale(void* scales, InType t, int64_t i, float v) {
  switch (t) {
    case InType::BF16: static_cast<__nv_bfloat16*>(scales)[i] = __float2bfloat16_rn(v); break;
    case InType::F16: static_cast<__half*>(scales)[i] = __float2half_rn(v); break;
    default: static_cast<float*>(scales)[i] = v;
  }
}

template <int Bits>
__global__ void intq_kernel(WeightBatch w, IntqSpec s, int32_t* packed, void* scales, int32_t* zp_packed, int* bad) {
  constexpr int kEpw = 32 / Bits;
  const DeviceRound rt{w.type};
  const int lane = threadIdx.x & 31;
  const int64_t warp = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  const int64_t warps = ((int64_t)gridDim.x * blockDim.x) >> 5;
  const int64_t ng = w.cols / s.group, groups = w.numel() / s.group;
  for (int64_t gi = warp; gi < groups; gi += warps) {  // warp-uniform loop
    const int64_t base = gi * s.group;
    float v[kCached];
    float mn = 0.f, mx = 0.f;
    bool finite = true;
#pragma unroll
    for (int j = 0; j < kCached; ++j) {
      const int64_t i = lane + 32 * j;
      v[j] = i < s.group ? load_elem(w, base + i) : 0.f;
      finite &= isfinite(v[j]);
      mn = fminf(mn, v[j]);
      mx = fmaxf(mx, v[j]);
    }
    for (int64_t i = lane + 32 * kCached; i < s.group; i += 32) {
      const float x = load_elem(w, base + i);
      finite &= isfinite(x);
      mn = fminf(mn, x);
      mx = fmaxf(mx, x);
    }
    for (int o = 16; o > 0; o >>= 1) {
      mn = fminf(mn, __shfl_xor_sync(0xffffffffu, mn, o));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    }
    if (!__all_sync(0xffffffffu, finite)) {
      if (lane == 0) atomicOr(bad, kIntqNonFinite);
      continue;
    }
    const IntqGroup g = intq_group(mn, mx, s, rt);
    if (lane == 0) {
      if (!g.finite) atomicOr(bad, kIntqScaleOverflow);
      store_scale(scales, w.type, gi, g.scale);
      if (zp_packed) {  // this group's zero point: one field of a word packed along `out`
        const int64_t e = gi / (w.rows * ng), row = (gi / ng) % w.rows, col = gi % ng;
        const int64_t zrows = (w.rows + kEpw - 1) / kEpw;
        const uint32_t field = (static_cast<uint32_t>(static_cast<int>(g.zp)) + (1u << (Bits - 1))) << (Bits * (row % kEpw));
        atomicOr(reinterpret_cast<unsigned int*>(&zp_packed[(e * zrows + row / kEpw) * ng + col]), field);
      }
    }
    // Pass 2, warp-uniform (every lane shuffles): code, shift into its field, OR into words.
    auto emit = [&](int64_t j, float x) {
      const int64_t i = lane + 32 * j;
      uint32_t field = 0;
      if (i < s.group) field = (static_cast<uint32_t>(intq_code(x, g, s, rt)) + (1u << (Bits - 1))) << (Bits * (lane % kEpw));
      for (int o = 1; o < kEpw; o <<= 1) field |= __shfl_xor_sync(0xffffffffu, field, o);
      if (i < s.group && lane % kEpw == 0) packed[(base + i) / kEpw] = static_cast<int32_t>(field);
    };
#pragma unroll
    for (int j = 0; j < kCached; ++j)
      if (j * 32 < s.group) emit(j, v[j]);
    for (int64_t j = kCached; j * 32 < s.group; ++j) {
      const int64_t i = lane + 32 * j;
      emit(j, i < s.group ? load_elem(w, base + i) : 0.f);
    }
  }
}

}  // namespace

void intq_quantize_cuda(const WeightBatch& w, const IntqSpec& s, int32_t* packed, void* scales, int32_t* zp_packed,
                        int* bad, void* stream) {
  const int64_t groups = w.numel() / s.group;
  const int64_t blocks = (groups + 7) / 8;  // 8 warps of 256 threads
  const unsigned grid = static_cast<unsigned>(blocks < 8192 ? (blocks > 0 ? blocks : 1) : 8192);
  auto st = static_cast<cudaStream_t>(stream);
  if (s.bits == 4)
    intq_kernel<4><<<grid, 256, 0, st>>>(w, s, packed, scales, zp_packed, bad);
  else
    intq_kernel<8><<<grid, 256, 0, st>>>(w, s, packed, scales, zp_packed, bad);
  cuda_check_last("intq quantize kernel");
}

}  // namespace moeq
