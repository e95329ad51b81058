// CUDA kernels for FP8 E4M3 (math in fp8.h). Also the shared abs-max reduction.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include "formats/cuda_check.h"
#include "formats/fast_div.h"
#include "formats/fp8/fp8.h"
#include "formats/amax_quantize.cuh"
#include "formats/e2m1_kernels.cuh"
#include "formats/kernel_types.cuh"

namespace moeq {
namespace {

__global__ void absmax_kernel(WeightBatch w, bool per_row, float* amax, int* bad) {
  // grid: (blocks per expert or one block per row, experts)
  const int64_t e = blockIdx.y;
  const int64_t n = per_row ? w.cols : w.rows * w.cols;
  const int64_t seg = per_row ? blockIdx.x : 0;
  const int64_t base = e * w.rows * w.cols + (per_row ? seg * w.cols : 0);
  const int64_t start = per_row ? threadIdx.x : blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t stride = per_row ? blockDim.x : gridDim.x * blockDim.x;
  float m = 0.f;
  bool finite = true;
  for (int64_t i = start; i < n; i += stride) {
    const float v = fabsf(load_elem(w, base + i));
    finite &= isfinite(v);
    m = fmaxf(m, v);
  }
  m = block_max(m);
  if (!finite) atomicExch(bad, 1);
  if (threadIdx.x == 0) atomic_max_nonneg(&amax[per_row ? e * w.rows + seg : e], m);
}

__global__ void fp8_kernel(WeightBatch w, bool per_channel, const float* scales, uint8_t* q, int* bad) {
  const int64_t total = w.numel();
  bool finite = true;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = i / w.cols;  // global row over experts
    const float s = per_channel ? scales[row] : scales[row / w.rows];
    const float v = load_elem(w, i);
    finite &= isfinite(v);
    q[i] = __nv_cvt_float_to_fp8(fminf(fmaxf(v / s, -448.f), 448.f), __NV_SATFINITE, __NV_E4M3);
  }
  if (!finite) atomicExch(bad, 1);
}

// Vectorized paths: each thread handles chunks of 8 consecutive elements with 16-byte
// loads (bf16/f16: one load, f32: two). Needs a 16-byte aligned base and experts whose
// element count is a multiple of 8; grid = (blocks per expert, experts).
constexpr int kChunk = 8;

// chunk_absmax_nan's loads in flight per thread and step.
constexpr int kAmaxLoads = 4;

template <InType T>
__global__ void absmax_vec_kernel(WeightBatch w, float* amax, int* bad) {
  const int64_t e = blockIdx.y, chunks = w.rows * w.cols / kChunk;
  const int64_t base = e * w.rows * w.cols, stride = (int64_t)gridDim.x * blockDim.x;
  float m = chunk_absmax_nan<T>(w.data, base, chunks, blockIdx.x * (int64_t)blockDim.x + threadIdx.x, stride);
  const bool finite = m <= 3.40282347e38f;
  m = block_max(finite ? m : INFINITY);
  if (!finite) atomicExch(bad, 1);
  if (threadIdx.x == 0) atomic_max_nonneg(&amax[e], m);
}

template <InType T>
__global__ void fp8_vec_kernel(WeightBatch w, bool per_channel, const float* scales, uint8_t* q, int* bad) {
  const int64_t e = blockIdx.y, chunks = w.rows * w.cols / kChunk;
  const int64_t base = e * w.rows * w.cols;
  const uint32_t cols = static_cast<uint32_t>(w.cols);
  bool finite = true;
  for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < chunks; c += (int64_t)gridDim.x * blockDim.x) {
    float x[kChunk];
    load_block<T, kChunk>(w.data, base + c * kChunk, true, x);
    uint32_t packed[2] = {0, 0};
    float s = per_channel ? 0.f : scales[e];
#pragma unroll
    for (int j = 0; j < kChunk; ++j) {
      if (per_channel && (j == 0 || (c * kChunk + j) % cols == 0))  // a chunk may straddle rows
        s = scales[e * w.rows + static_cast<uint32_t>((c * kChunk + j) / cols)];
      finite &= isfinite(x[j]);
      const uint32_t b = __nv_cvt_float_to_fp8(fminf(fmaxf(x[j] / s, -448.f), 448.f), __NV_SATFINITE, __NV_E4M3);
      packed[j / 4] |= b << (8 * (j % 4));
    }
    reinterpret_cast<uint2*>(q + base)[c] = make_uint2(packed[0], packed[1]);
  }
  if (!finite) atomicExch(bad, 1);
}

bool vectorizable(const WeightBatch& w) { return aligned16(w.data) && (w.rows * w.cols) % kChunk == 0; }

// (chunks per thread: how many chunks each thread takes per step)
dim3 vec_grid(const WeightBatch& w, int chunks_per_thread = 1) {
  const int64_t per_expert = (w.rows * w.cols / kChunk + 256 * chunks_per_thread - 1) / (256 * chunks_per_thread);
  return dim3(static_cast<unsigned>(per_expert < 1 ? 1 : (per_expert > 4096 ? 4096 : per_expert)),
              static_cast<unsigned>(w.experts));
}

// The amax as the input type holds it (then the scale is one fast_div was checked with).
template <InType T>
__device__ __forceinline__ bool held_by(float v) {
  if constexpr (T == InType::BF16) return (__float_as_uint(v) & 0xFFFFu) == 0;
  else if constexpr (T == InType::F16) return __half2float(__float2half_rn(v)) == v;
  else return false;  // f32 inputs keep the division (not checked exhaustively)
}

// Per-tensor FP8 for amax_quantize.cuh: 16 elements (32 bytes of bf16) in, 16 bytes out.
struct Fp8Param {
  float s, r;  // scale and RN(1 / scale)
  bool fast;   // fast_div applies (else the division)
};

struct Fp8Q {
  float* scales;
  uint8_t* q;
  static constexpr int kUnit = 16;
  using Param = Fp8Param;
  template <InType T>
  __device__ Param param(float amax) const {
    const float s = fp8_scale_from_amax(amax);
    return {s, __frcp_rn(s), held_by<T>(amax) && fast_div_scale_ok(s)};
  }
  __device__ void head(int64_t e, Param p) const { scales[e] = p.s; }
  __device__ __forceinline__ bool unit(const float* x, int64_t first, Param p) const {
    uint32_t wd[4] = {0, 0, 0, 0};
    float m = 0.f;
    float v[kUnit];
    bool fast = p.fast;
#pragma unroll
    for (int j = 0; j < kUnit; ++j) {
      m = max_nan(m, fabsf(x[j]));
      v[j] = fast_quotient(x[j], p.s, p.r);
      fast &= fast_div_applies(x[j]);
    }
    if (!fast)  // a value outside fast_div's range, or a scale outside it: divide
      for (int j = 0; j < kUnit; ++j) v[j] = x[j] / p.s;
#pragma unroll
    for (int j = 0; j < kUnit; ++j) v[j] = fminf(fmaxf(v[j], -448.f), 448.f);
#pragma unroll
    for (int j = 0; j < kUnit; j += 2) {  // element j in the low byte
      const uint32_t b2 = __nv_cvt_float2_to_fp8x2(make_float2(v[j], v[j + 1]), __NV_SATFINITE, __NV_E4M3);
      wd[j / 4] |= b2 << (8 * (j % 4));
    }
    *reinterpret_cast<uint4*>(q + first) = make_uint4(wd[0], wd[1], wd[2], wd[3]);
    return m <= 3.40282347e38f;
  }
};

}  // namespace

void fp8_quantize_tensor_cuda(const WeightBatch& w, const float* given_amax, int* scratch, float* scales, uint8_t* q,
                              void* stream) {
  launch_amax_quantize(w, given_amax, scratch, Fp8Q{scales, q}, static_cast<cudaStream_t>(stream), "fp8 quantize kernel");
}

void absmax_cuda(const WeightBatch& w, bool per_row, float* amax, int* bad, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (!per_row && vectorizable(w)) {
    const dim3 grid = vec_grid(w, kAmaxLoads);
    switch (w.type) {
      case InType::BF16: absmax_vec_kernel<InType::BF16><<<grid, 256, 0, s>>>(w, amax, bad); break;
      case InType::F16: absmax_vec_kernel<InType::F16><<<grid, 256, 0, s>>>(w, amax, bad); break;
      default: absmax_vec_kernel<InType::F32><<<grid, 256, 0, s>>>(w, amax, bad); break;
    }
  } else {
    dim3 grid(per_row ? w.rows : 1024, w.experts);
    absmax_kernel<<<grid, 256, 0, s>>>(w, per_row, amax, bad);
  }
  cuda_check_last("absmax kernel");
}

void fp8_quantize_cuda(const WeightBatch& w, bool per_channel, const float* scales, uint8_t* q, int* bad, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (vectorizable(w) && w.cols < (1ll << 31)) {
    switch (w.type) {
      case InType::BF16: fp8_vec_kernel<InType::BF16><<<vec_grid(w), 256, 0, s>>>(w, per_channel, scales, q, bad); break;
      case InType::F16: fp8_vec_kernel<InType::F16><<<vec_grid(w), 256, 0, s>>>(w, per_channel, scales, q, bad); break;
      default: fp8_vec_kernel<InType::F32><<<vec_grid(w), 256, 0, s>>>(w, per_channel, scales, q, bad); break;
    }
  } else {
    fp8_kernel<<<4096, 256, 0, s>>>(w, per_channel, scales, q, bad);
  }
  cuda_check_last("fp8 quantize kernel");
}

}  // namespace moeq
