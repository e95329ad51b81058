#pragma once
// Formats with a per-expert (per-tensor) scale (NVFP4, FP8) need the expert's abs-max before
// its first element can be quantized: the vectorized abs-max kernel (absmax_cuda, fp8.cu),
// then the quantize kernel below, which every format with such a scale shares. (Two one-launch
// designs that read each byte from HBM once were slower on an H200, docs/perf.md: the L2 one,
// and one holding 3 expert slices per SM in shared memory; both wait on a grid-wide counter
// per expert.)
//
// A quantizer Q provides:
//   static constexpr int kUnit;                         elements per thread and step (a multiple of 8)
//   using Param = ...;                                   per-expert parameter (small struct or float)
//   template <InType T> __device__ Param param(float amax) const;  Param from the abs-max
//   __device__ void head(int64_t e, Param p) const;      per-expert outputs (one thread)
//   __device__ bool unit(const float* x, int64_t first, Param p) const;
//       quantizes x = elements [first, first + kUnit) of the stack; returns false when one
//       of them is NaN or Inf
#include <cuda_runtime.h>

#include <algorithm>

#include "formats/cuda_check.h"
#include "formats/e2m1_kernels.cuh"
#include "formats/kernel_types.cuh"

namespace moeq {

constexpr int kAmaxQuantizeThreads = 256;

// Layout of the scratch buffer the launcher needs (zero-filled ints): amax as float bits [E],
// (unused) [E], the bad flag [1].
inline int64_t fused_scratch_ints(int64_t experts) { return 2 * experts + 1; }

// The quantize pass with the abs-max known (E floats): grid (units, experts).
template <InType T, class Q>
__global__ void __launch_bounds__(kAmaxQuantizeThreads) given_amax_kernel(WeightBatch w, const float* amax, int* bad, Q q) {
  const int64_t n = w.rows * w.cols, e = blockIdx.y;
  const auto p = q.template param<T>(amax[e]);
  if (blockIdx.x == 0 && threadIdx.x == 0) q.head(e, p);
  bool finite = true;
  for (int64_t u = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; u < n / Q::kUnit; u += (int64_t)gridDim.x * blockDim.x) {
    float x[Q::kUnit];
    load_block<T, Q::kUnit>(w.data, e * n + u * Q::kUnit, true, x);
    finite &= q.unit(x, e * n + u * Q::kUnit, p);
  }
  if (!finite) atomicExch(bad, 1);
}

// Whether these kernels apply: 16-byte aligned data, experts a whole number of units.
inline bool fused_applies(const WeightBatch& w, int unit) {
  return aligned16(w.data) && (w.rows * w.cols) % unit == 0 && w.rows * w.cols > 0;
}

// Per-expert abs-max into amax (zeroed), *bad on NaN/Inf (fp8.cu).
void absmax_cuda(const WeightBatch& w, bool per_row, float* amax, int* bad, void* stream);

// scratch: fused_scratch_ints(E) zeroed ints on the device. given == nullptr: the abs-max is
// computed first (into scratch); else E given floats. *bad (in scratch) is set on NaN/Inf.
template <class Q>
void launch_amax_quantize(const WeightBatch& w, const float* given, int* scratch, const Q& q, cudaStream_t s,
                          const char* what) {
  float* amax = reinterpret_cast<float*>(scratch);
  int* bad = scratch + 2 * w.experts;
  if (!given) {
    absmax_cuda(w, false, amax, bad, s);
    given = amax;
  }
  const int64_t units = w.rows * w.cols / Q::kUnit;
  const int64_t want = std::max<int64_t>(1, (units + kAmaxQuantizeThreads - 1) / kAmaxQuantizeThreads);
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(want, 4096)), static_cast<unsigned>(w.experts));
  switch (w.type) {
    case InType::BF16: given_amax_kernel<InType::BF16, Q><<<grid, kAmaxQuantizeThreads, 0, s>>>(w, given, bad, q); break;
    case InType::F16: given_amax_kernel<InType::F16, Q><<<grid, kAmaxQuantizeThreads, 0, s>>>(w, given, bad, q); break;
    default: given_amax_kernel<InType::F32, Q><<<grid, kAmaxQuantizeThreads, 0, s>>>(w, given, bad, q); break;
  }
  cuda_check_last(what);
}

}  // namespace moeq
