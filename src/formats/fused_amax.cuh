#pragma once
// Formats with a per-expert (per-tensor) scale need the expert's abs-max before its first
// element can be quantized. Two ways to run both passes:
//  - resident (one cooperative launch, each byte read from HBM once): every CTA (one per SM)
//    copies its slice of expert e + 2 into shared memory with cp.async while it quantizes
//    expert e from shared memory; when expert e + 1's slice has landed it reduces its
//    abs-max and bumps e + 1's arrival counter. Expert e's quantize step waits for every
//    CTA's arrival at e, which happened one whole step earlier, so the wait is rarely felt.
//    Needs 3 slices of an expert per SM in shared memory (bf16 experts up to ~9 MB on H100/H200).
//  - twopass: the vectorized abs-max kernel (absmax_cuda, fp8.cu), then the given-amax kernel.
// MOEQ_AMAX_KERNEL=twopass selects the second where the first applies (for benchmarking).
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
#include <string>

#include "core/error.h"
#include "formats/cuda_check.h"
#include "formats/e2m1_kernels.cuh"
#include "formats/kernel_types.cuh"

namespace moeq {

constexpr int kFusedThreads = 256;    // given-amax kernel
constexpr int kResidentThreads = 512;  // resident kernel: one CTA per SM
constexpr int kResidentSlots = 3;      // expert slices in shared memory: e, e + 1, e + 2

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

// Shared-memory layout of the resident kernel: slot, unit k of the thread, 16-byte vector v
// of the unit, thread (consecutive threads at consecutive 16 bytes: conflict-free).
template <InType T, class Q>
struct ResidentLayout {
  static constexpr int kVecs = Q::kUnit * (T == InType::F32 ? 4 : 2) / 16;
  int units_per_thread;
  __device__ __forceinline__ int index(int slot, int k, int v) const {
    return ((slot * units_per_thread + k) * kVecs + v) * kResidentThreads + static_cast<int>(threadIdx.x);
  }
};

template <InType T, int N>
__device__ __forceinline__ void decode_vecs(const uint4* vec, int stride, float* x) {
  constexpr int kPer = T == InType::F32 ? 4 : 8;
#pragma unroll
  for (int v = 0; v < N / kPer; ++v) {
    const uint4 u = vec[v * stride];
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if constexpr (kPer == 4) {
        x[v * 4 + j] = decode_in<T>(w[j]);
      } else {
        x[v * 8 + 2 * j] = decode_in<T>(w[j] & 0xFFFFu);
        x[v * 8 + 2 * j + 1] = decode_in<T>(w[j] >> 16);
      }
    }
  }
}

template <InType T, class Q>
__global__ void __launch_bounds__(kResidentThreads, 1) resident_amax_kernel(WeightBatch w, int units_per_thread,
                                                                            float* amax, unsigned* arrived, int* bad, Q q) {
  extern __shared__ uint4 slices[];
  __shared__ float red[kResidentThreads / 32];
  using L = ResidentLayout<T, Q>;
  const L lay{units_per_thread};
  const int64_t n = w.rows * w.cols, E = w.experts, units = n / Q::kUnit;
  const int64_t tid = blockIdx.x * (int64_t)kResidentThreads + threadIdx.x, nth = (int64_t)gridDim.x * kResidentThreads;
  const char* data = static_cast<const char*>(w.data);
  constexpr int kUnitBytes = L::kVecs * 16;
  auto load = [&](int64_t e, int slot) {  // cp.async of this thread's units of expert e; one commit group
    if (e < E) {
      for (int k = 0; k < units_per_thread; ++k) {
        const int64_t u = tid + k * nth;
        if (u >= units) break;
        const char* src = data + (e * units + u) * kUnitBytes;
#pragma unroll
        for (int v = 0; v < L::kVecs; ++v) {
          const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(&slices[lay.index(slot, k, v)]));
          asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src + 16 * v));
        }
      }
    }
    asm volatile("cp.async.commit_group;");
  };
  auto reduce = [&](int64_t e, int slot) {  // after its group landed: this thread's abs-max, then the CTA's
    if (e >= E) return;
    float m = 0.f;
    for (int k = 0; k < units_per_thread; ++k) {
      if (tid + k * nth >= units) break;
      float x[Q::kUnit];
      decode_vecs<T, Q::kUnit>(&slices[lay.index(slot, k, 0)], kResidentThreads, x);
      m = max_nan(m, absmax_nan(x, Q::kUnit));
    }
    const bool finite = m <= 3.40282347e38f;
    if (!finite) atomicExch(bad, 1);
    m = cta_max(finite ? m : INFINITY, red);
    if (threadIdx.x == 0) {
      atomic_max_nonneg(&amax[e], m);
      __threadfence();
      atomicAdd(&arrived[e], 1u);
    }
  };
  auto quantize = [&](int64_t e, int slot) {
    if (threadIdx.x == 0) {
      while (*reinterpret_cast<volatile unsigned*>(&arrived[e]) < gridDim.x) __nanosleep(32);
      __threadfence();
    }
    __syncthreads();
    const auto p = q.template param<T>(__ldcg(&amax[e]));
    if (tid == 0) q.head(e, p);
    for (int k = 0; k < units_per_thread; ++k) {
      const int64_t u = tid + k * nth;
      if (u >= units) break;
      float x[Q::kUnit];
      decode_vecs<T, Q::kUnit>(&slices[lay.index(slot, k, 0)], kResidentThreads, x);
      q.unit(x, (e * units + u) * Q::kUnit, p);
    }
  };
  // Prologue: experts 0 and 1 in flight, expert 0 reduced.
  load(0, 0);
  load(1, 1);
  asm volatile("cp.async.wait_group 1;");
  reduce(0, 0);
  // Step e: load e + 2, reduce e + 1 (landed), quantize e. Slots rotate with e % 3.
  for (int64_t e = 0; e < E; ++e) {
    const int s0 = static_cast<int>(e % kResidentSlots);
    const int s1 = s0 == kResidentSlots - 1 ? 0 : s0 + 1, s2 = s1 == kResidentSlots - 1 ? 0 : s1 + 1;
    __syncthreads();  // cta_max's shared scratch and the slot reloaded next are free
    load(e + 2, s2);
    asm volatile("cp.async.wait_group 1;");
    reduce(e + 1, s1);
    quantize(e, s0);
  }
  asm volatile("cp.async.wait_group 0;");
}

// The same quantize pass with the abs-max given (E floats): grid (units, experts).
template <InType T, class Q>
__global__ void __launch_bounds__(kFusedThreads) given_amax_kernel(WeightBatch w, const float* amax, int* bad, Q q) {
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

// Whether the vectorized kernels apply: 16-byte aligned data, experts a whole number of units.
inline bool fused_applies(const WeightBatch& w, int unit) {
  return aligned16(w.data) && (w.rows * w.cols) % unit == 0 && w.rows * w.cols > 0;
}

enum class AmaxKernel { Resident, TwoPass };
AmaxKernel amax_kernel_choice();  // MOEQ_AMAX_KERNEL (fp8.cu)

// Per-expert abs-max into amax (zeroed), *bad on NaN/Inf (fp8.cu).
void absmax_cuda(const WeightBatch& w, bool per_row, float* amax, int* bad, void* stream);

// scratch: fused_scratch_ints(E) zeroed ints on the device. given == nullptr: the abs-max is
// computed (resident kernel where it fits, else twopass); else E given floats. *bad (in
// scratch) is set on NaN/Inf.
template <class Q>
void launch_amax_quantize(const WeightBatch& w, const float* given, int* scratch, const Q& q, cudaStream_t s,
                          const char* what) {
  float* amax = reinterpret_cast<float*>(scratch);
  unsigned* arrived = reinterpret_cast<unsigned*>(scratch + w.experts);
  int* bad = scratch + 2 * w.experts;
  const int64_t units = w.rows * w.cols / Q::kUnit;
  const int64_t want = std::max<int64_t>(1, (units + kFusedThreads - 1) / kFusedThreads);
  auto run = [&](auto resident, auto plain, int elem_bytes) {
    if (!given) {
      int dev = 0, sms = 0, max_smem = 0, per_sm = 0;
      cudaGetDevice(&dev);
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
      cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
      const int64_t nth = static_cast<int64_t>(sms) * kResidentThreads;
      const int64_t upt = (units + nth - 1) / nth;
      const int64_t smem = kResidentSlots * upt * kResidentThreads * Q::kUnit * elem_bytes;
      const int64_t static_smem = kResidentThreads / 32 * 4 + 1024;
      if (amax_kernel_choice() == AmaxKernel::Resident && smem + static_smem <= max_smem) {
        cudaFuncSetAttribute(resident, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, resident, kResidentThreads, static_cast<size_t>(smem));
        if (per_sm >= 1) {
          WeightBatch wa = w;
          Q qa = q;
          int upt_arg = static_cast<int>(upt);
          void* args[] = {&wa, &upt_arg, &amax, &arrived, &bad, &qa};
          const cudaError_t err = cudaLaunchCooperativeKernel(reinterpret_cast<void*>(resident), sms, kResidentThreads,
                                                              args, static_cast<size_t>(smem), s);
          if (err != cudaSuccess) {
            cudaGetLastError();  // clear it; cuda_check_last would report a stale error otherwise
            throw Error(std::string(what) + ": cooperative launch failed: " + cudaGetErrorString(err));
          }
          return;
        }
        cudaGetLastError();
      }
      absmax_cuda(w, false, amax, bad, s);  // twopass
      given = amax;
    }
    const unsigned gx = static_cast<unsigned>(std::min<int64_t>(want, 4096));
    plain<<<dim3(gx, static_cast<unsigned>(w.experts)), kFusedThreads, 0, s>>>(w, given, bad, q);
  };
  switch (w.type) {
    case InType::BF16: run(resident_amax_kernel<InType::BF16, Q>, given_amax_kernel<InType::BF16, Q>, 2); break;
    case InType::F16: run(resident_amax_kernel<InType::F16, Q>, given_amax_kernel<InType::F16, Q>, 2); break;
    default: run(resident_amax_kernel<InType::F32, Q>, given_amax_kernel<InType::F32, Q>, 4); break;
  }
  cuda_check_last(what);
}

}  // namespace moeq
