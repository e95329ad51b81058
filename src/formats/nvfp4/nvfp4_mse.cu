// CUDA kernel of the NVFP4 block-scale MSE search (the per-block math is in nvfp4_mse.h,
// shared with the CPU loop): one thread per 16-element block tries every candidate scale.
#include "formats/cuda_check.h"
#include "formats/e2m1_kernels.cuh"
#include "formats/nvfp4/nvfp4_mse.h"

namespace moeq {
namespace {

template <InType T>
__global__ void nvfp4_mse_kernel(WeightBatch w, bool aligned, const float* amax, const float* mult, int64_t K, uint8_t* out) {
  const int64_t blocks = w.numel() / kNvfp4Block, per_expert = w.rows * w.cols / kNvfp4Block;
  for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < blocks; b += (int64_t)gridDim.x * blockDim.x) {
    float x[kNvfp4Block];
    load_block<T, kNvfp4Block>(w.data, b * kNvfp4Block, aligned, x);
    out[b] = nvfp4_mse_block_byte(x, amax[b / per_expert], mult, K);
  }
}

}  // namespace

void nvfp4_mse_search_cuda(const WeightBatch& w, const float* amax, const float* mult, int64_t K, uint8_t* out, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  constexpr int kThreads = 128;
  const unsigned grid = grid_for(w.numel() / kNvfp4Block, kThreads);
  const bool al = aligned16(w.data);
  switch (w.type) {
    case InType::BF16: nvfp4_mse_kernel<InType::BF16><<<grid, kThreads, 0, s>>>(w, al, amax, mult, K, out); break;
    case InType::F16: nvfp4_mse_kernel<InType::F16><<<grid, kThreads, 0, s>>>(w, al, amax, mult, K, out); break;
    default: nvfp4_mse_kernel<InType::F32><<<grid, kThreads, 0, s>>>(w, al, amax, mult, K, out); break;
  }
  cuda_check_last("nvfp4 mse search kernel");
}

}  // namespace moeq
