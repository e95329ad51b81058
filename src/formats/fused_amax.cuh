#pragma once
// Formats with a per-expert (per-tensor) scale need the expert's abs-max before its first
// element can be quantized. fused_amax_quantize runs both passes in ONE cooperative launch
// that reads each expert from HBM about once: while the CTAs quantize expert e they already
// reduce the abs-max of expert e + kLookahead, whose bytes then stay in L2 (an expert stack
// of a real MoE is a few MB per expert; H100/H200 have 50/60 MB of L2) until its quantize
// pass reads them again. Expert e's quantize pass waits on one counter that every CTA bumps
// after adding its partial abs-max, kLookahead experts earlier, so the wait is rarely felt.
// Co-residency of all CTAs (needed by that wait) is guaranteed by the cooperative launch.
//
// A quantizer Q provides:
//   static constexpr int kUnit;                         elements per thread and step (a multiple of 8)
//   using Param = ...;                                   per-expert parameter (small struct or float)
//   template <InType T> __device__ Param param(float amax) const;  Param from the abs-max
//   __device__ void head(int64_t e, Param p) const;      per-expert outputs (one thread)
//   template <InType T> __device__ bool unit(const void* data, int64_t first, Param p) const;
//       quantizes elements [first, first + kUnit) of the stack (16-byte aligned loads);
//       returns false when one of them is NaN or Inf
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "core/error.h"
#include "formats/cuda_check.h"
#include "formats/e2m1_kernels.cuh"
#include "formats/kernel_types.cuh"

namespace moeq {

constexpr int kFusedThreads = 256;
constexpr int kLookahead = 2;

// Max over the CTA, valid in thread 0; callable repeatedly (barrier before the smem reuse).
__device__ __forceinline__ float cta_max(float v, float* smem) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) smem[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x == 0)
    for (int i = 1; i < (int)(blockDim.x >> 5); ++i) v = fmaxf(v, smem[i]);
  return v;
}

// Layout of the scratch buffer the launcher needs (zero-filled ints): amax as float bits [E],
// arrival counters [E], the bad flag [1].
inline int64_t fused_scratch_ints(int64_t experts) { return 2 * experts + 1; }

template <InType T, class Q>
__global__ void __launch_bounds__(kFusedThreads) fused_amax_kernel(WeightBatch w, float* amax, unsigned* arrived,
                                                                   int* bad, Q q) {
  __shared__ float smem[kFusedThreads / 32];
  const int64_t n = w.rows * w.cols, E = w.experts;
  const int64_t tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, nth = (int64_t)gridDim.x * blockDim.x;
  auto reduce = [&](int64_t e) {
    float m = chunk_absmax_nan<T>(w.data, e * n, n / 8, tid, nth);
    const bool finite = m <= 3.40282347e38f;
    if (!finite) atomicExch(bad, 1);
    m = cta_max(finite ? m : INFINITY, smem);
    if (threadIdx.x == 0) {
      atomic_max_nonneg(&amax[e], m);
      __threadfence();
      atomicAdd(&arrived[e], 1u);
    }
  };
  for (int64_t e = 0; e < kLookahead && e < E; ++e) reduce(e);
  for (int64_t e = 0; e < E; ++e) {
    if (e + kLookahead < E) reduce(e + kLookahead);
    if (threadIdx.x == 0) {
      while (*reinterpret_cast<volatile unsigned*>(&arrived[e]) < gridDim.x) __nanosleep(40);
      __threadfence();
    }
    __syncthreads();
    const auto p = q.template param<T>(__ldcg(&amax[e]));
    if (tid == 0) q.head(e, p);
    for (int64_t u = tid; u < n / Q::kUnit; u += nth) q.template unit<T>(w.data, e * n + u * Q::kUnit, p);
  }
}

// The same quantize pass with the abs-max given (E floats): grid (units, experts).
template <InType T, class Q>
__global__ void __launch_bounds__(kFusedThreads) given_amax_kernel(WeightBatch w, const float* amax, int* bad, Q q) {
  const int64_t n = w.rows * w.cols, e = blockIdx.y;
  const auto p = q.template param<T>(amax[e]);
  if (blockIdx.x == 0 && threadIdx.x == 0) q.head(e, p);
  bool finite = true;
  for (int64_t u = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; u < n / Q::kUnit; u += (int64_t)gridDim.x * blockDim.x)
    finite &= q.template unit<T>(w.data, e * n + u * Q::kUnit, p);
  if (!finite) atomicExch(bad, 1);
}

// Whether the vectorized kernels apply: 16-byte aligned data, experts a whole number of units.
inline bool fused_applies(const WeightBatch& w, int unit) {
  return aligned16(w.data) && (w.rows * w.cols) % unit == 0 && w.rows * w.cols > 0;
}

// scratch: fused_scratch_ints(E) zeroed ints on the device. amax == nullptr: computed
// (one cooperative launch); else E given floats. *bad (in scratch) is set on NaN/Inf.
template <class Q>
void launch_amax_quantize(const WeightBatch& w, const float* given, int* scratch, const Q& q, cudaStream_t s,
                          const char* what) {
  float* amax = reinterpret_cast<float*>(scratch);
  unsigned* arrived = reinterpret_cast<unsigned*>(scratch + w.experts);
  int* bad = scratch + 2 * w.experts;
  const int64_t units = w.rows * w.cols / Q::kUnit;
  const int64_t want = std::max<int64_t>(1, (units + kFusedThreads - 1) / kFusedThreads);
  auto run = [&](auto fused, auto plain) {
    if (given) {
      const unsigned gx = static_cast<unsigned>(std::min<int64_t>(want, 4096));
      plain<<<dim3(gx, static_cast<unsigned>(w.experts)), kFusedThreads, 0, s>>>(w, given, bad, q);
      return;
    }
    int dev = 0, sms = 0, per_sm = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fused, kFusedThreads, 0);
    const unsigned grid = static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(want, (int64_t)sms * per_sm)));
    WeightBatch wa = w;
    Q qa = q;
    void* args[] = {&wa, &amax, &arrived, &bad, &qa};
    const cudaError_t err = cudaLaunchCooperativeKernel(reinterpret_cast<void*>(fused), grid, kFusedThreads, args, 0, s);
    if (err != cudaSuccess) {
      cudaGetLastError();  // clear it; cuda_check_last would report a stale error otherwise
      throw Error(std::string(what) + ": cooperative launch failed: " + cudaGetErrorString(err));
    }
  };
  switch (w.type) {
    case InType::BF16: run(fused_amax_kernel<InType::BF16, Q>, given_amax_kernel<InType::BF16, Q>); break;
    case InType::F16: run(fused_amax_kernel<InType::F16, Q>, given_amax_kernel<InType::F16, Q>); break;
    default: run(fused_amax_kernel<InType::F32, Q>, given_amax_kernel<InType::F32, Q>); break;
  }
  cuda_check_last(what);
}

}  // namespace moeq
