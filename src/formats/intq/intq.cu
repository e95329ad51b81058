// CUDA kernel for the int4 / int8 group-wise formats (math and layout in intq.h).
// One warp per group, grid-stride over all groups of the [E, out, in] stack (one launch).
// Lane l holds elements l, l+32, ... of its group in registers (up to kCached per lane;
// larger groups re-read the rest from L1/L2), reduces min/max over the warp, then packs
// 32/b consecutive codes into a word with an OR across neighbouring lanes.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "formats/cuda_check.h"
#include "formats/fast_div.h"
#include "formats/intq/intq.h"
#include "formats/e2m1_kernels.cuh"
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

// Vectorized path (16-byte aligned data, group a multiple of 16 and at most 512): each thread
// owns 16 consecutive elements (two 16-byte loads of bf16) and writes their codes whole (int4:
// two words, int8: four); TPG = group / 16 neighbouring lanes share a group (shuffle reductions).
template <InType T>
struct RoundTo {
  __device__ float operator()(float v) const {
    if constexpr (T == InType::BF16) return __bfloat162float(__float2bfloat16_rn(v));
    else if constexpr (T == InType::F16) return __half2float(__float2half_rn(v));
    else return v;
  }
};

constexpr int kVecElems = 16;

template <InType T, int Bits, int TPG>
__global__ void __launch_bounds__(256) intq_vec_kernel(WeightBatch w, IntqSpec s, int32_t* packed, void* scales,
                                                       int32_t* zp_packed, int* bad) {
  constexpr int kEpw = 32 / Bits, kWords = kVecElems / kEpw;
  const RoundTo<T> rt;
  const int lane = threadIdx.x & 31, glane = lane % TPG;
  const int64_t units = w.numel() / kVecElems, ng = w.cols / s.group;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t u0 = blockIdx.x * (int64_t)blockDim.x + (threadIdx.x & ~31); u0 < units; u0 += stride) {  // warp-uniform
    const int64_t u = u0 + lane;
    const bool active = u < units;  // whole groups are active together (units is a multiple of TPG)
    float x[kVecElems];
    if (active) {
      load_block<T, kVecElems>(w.data, u * kVecElems, true, x);
    } else {
#pragma unroll
      for (int j = 0; j < kVecElems; ++j) x[j] = 0.f;
    }
    float mn = 0.f, mx = 0.f;  // NaN-propagating: both finite exactly when the group is
#pragma unroll
    for (int j = 0; j < kVecElems; ++j) {
      mn = min_nan(mn, x[j]);
      mx = max_nan(mx, x[j]);
    }
#pragma unroll
    for (int o = TPG / 2; o > 0; o >>= 1) {
      mn = min_nan(mn, __shfl_xor_sync(0xffffffffu, mn, o));
      mx = max_nan(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    }
    const bool fin = mn >= -3.40282347e38f && mx <= 3.40282347e38f;
    if (!active) continue;
    const int64_t gi = u / TPG;  // group index over the stack
    if (!fin) {
      if (glane == 0) atomicOr(bad, kIntqNonFinite);
      continue;
    }
    const IntqGroup g = intq_group(mn, mx, s, rt);
    if (glane == 0) {
      if (!g.finite) atomicOr(bad, kIntqScaleOverflow);
      store_scale(scales, T, gi, g.scale);
      if (zp_packed) {
        const int64_t e = gi / (w.rows * ng), row = (gi / ng) % w.rows, col = gi % ng;
        const int64_t zrows = (w.rows + kEpw - 1) / kEpw;
        const uint32_t field = (static_cast<uint32_t>(static_cast<int>(g.zp)) + (1u << (Bits - 1))) << (Bits * (row % kEpw));
        atomicOr(reinterpret_cast<unsigned int*>(&zp_packed[(e * zrows + row / kEpw) * ng + col]), field);
      }
    }
    uint32_t wd[kWords];
#pragma unroll
    for (int k = 0; k < kWords; ++k) wd[k] = 0;
    // bf16/f16: the scale is a value of T, so fast_div gives x / scale (f32 keeps the division).
    bool fast = T != InType::F32 && fast_div_scale_ok(g.scale);
    const float r = __frcp_rn(g.scale);
    float quotient[kVecElems];
#pragma unroll
    for (int j = 0; j < kVecElems; ++j) {
      quotient[j] = fast_quotient(x[j], g.scale, r);
      fast &= fast_div_applies(x[j]);
    }
    if (!fast)  // a value outside fast_div's range, f32 input or such a scale: divide
      for (int j = 0; j < kVecElems; ++j) quotient[j] = x[j] / g.scale;
#pragma unroll
    for (int j = 0; j < kVecElems; ++j)
      wd[j / kEpw] |= (static_cast<uint32_t>(intq_code_of_quotient(quotient[j], g, s, rt)) + (1u << (Bits - 1)))
                      << (Bits * (j % kEpw));
    int32_t* out = packed + u * kWords;
    if constexpr (kWords == 4) *reinterpret_cast<uint4*>(out) = make_uint4(wd[0], wd[1], wd[2], wd[3]);
    else *reinterpret_cast<uint2*>(out) = make_uint2(wd[0], wd[1]);
  }
}

template <int Bits, int TPG>
void launch_vec(const WeightBatch& w, const IntqSpec& s, int32_t* packed, void* scales, int32_t* zp, int* bad,
                cudaStream_t st) {
  const int64_t units = w.numel() / kVecElems;
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>((units + 255) / 256, 1), 8192));
  switch (w.type) {
    case InType::BF16: intq_vec_kernel<InType::BF16, Bits, TPG><<<grid, 256, 0, st>>>(w, s, packed, scales, zp, bad); break;
    case InType::F16: intq_vec_kernel<InType::F16, Bits, TPG><<<grid, 256, 0, st>>>(w, s, packed, scales, zp, bad); break;
    default: intq_vec_kernel<InType::F32, Bits, TPG><<<grid, 256, 0, st>>>(w, s, packed, scales, zp, bad); break;
  }
}

template <int Bits>
bool try_vec(const WeightBatch& w, const IntqSpec& s, int32_t* packed, void* scales, int32_t* zp, int* bad,
             cudaStream_t st) {
  if (!aligned16(w.data) || s.group % kVecElems != 0) return false;
  switch (s.group / kVecElems) {
    case 1: launch_vec<Bits, 1>(w, s, packed, scales, zp, bad, st); return true;
    case 2: launch_vec<Bits, 2>(w, s, packed, scales, zp, bad, st); return true;
    case 4: launch_vec<Bits, 4>(w, s, packed, scales, zp, bad, st); return true;
    case 8: launch_vec<Bits, 8>(w, s, packed, scales, zp, bad, st); return true;
    case 16: launch_vec<Bits, 16>(w, s, packed, scales, zp, bad, st); return true;
    case 32: launch_vec<Bits, 32>(w, s, packed, scales, zp, bad, st); return true;
    default: return false;
  }
}

}  // namespace

void intq_quantize_cuda(const WeightBatch& w, const IntqSpec& s, int32_t* packed, void* scales, int32_t* zp_packed,
                        int* bad, void* stream) {
  const int64_t groups = w.numel() / s.group;
  const int64_t blocks = (groups + 7) / 8;  // 8 warps of 256 threads
  const unsigned grid = static_cast<unsigned>(blocks < 8192 ? (blocks > 0 ? blocks : 1) : 8192);
  auto st = static_cast<cudaStream_t>(stream);
  if (s.bits == 4 ? try_vec<4>(w, s, packed, scales, zp_packed, bad, st) : try_vec<8>(w, s, packed, scales, zp_packed, bad, st)) {
    cuda_check_last("intq quantize kernel");
    return;
  }
  if (s.bits == 4)
    intq_kernel<4><<<grid, 256, 0, st>>>(w, s, packed, scales, zp_packed, bad);
  else
    intq_kernel<8><<<grid, 256, 0, st>>>(w, s, packed, scales, zp_packed, bad);
  cuda_check_last("intq quantize kernel");
}

}  // namespace moeq
