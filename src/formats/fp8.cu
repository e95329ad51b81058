// CUDA kernels for FP8 E4M3 (math in fp8.h). Also the shared abs-max reduction.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include "formats/cuda_check.h"
#include "formats/fp8.h"
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

}  // namespace

void absmax_cuda(const WeightBatch& w, bool per_row, float* amax, int* bad, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  dim3 grid(per_row ? w.rows : 1024, w.experts);
  absmax_kernel<<<grid, 256, 0, s>>>(w, per_row, amax, bad);
  cuda_check_last("absmax kernel");
}

void fp8_quantize_cuda(const WeightBatch& w, bool per_channel, const float* scales, uint8_t* q, int* bad, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  fp8_kernel<<<4096, 256, 0, s>>>(w, per_channel, scales, q, bad);
  cuda_check_last("fp8 quantize kernel");
}

}  // namespace moeq
