// CUDA kernel for NVFP4 (math in nvfp4.h, shared with the CPU kernel). One launch for the
// whole stack, one thread per 16-element block: read, block amax, fp8 scale, round, pack.
// The per-expert amax comes from absmax_cuda (fp8.cu) unless the caller gave one.
#include "formats/cuda_check.h"
#include "formats/e2m1_kernels.cuh"
#include "formats/nvfp4.h"

namespace moeq {
namespace {

template <InType T>
__global__ void nvfp4_kernel(WeightBatch w, bool aligned, const float* amax, uint8_t* q, uint8_t* scales, float* gs,
                             int* bad) {
  const int64_t blocks = w.numel() / kNvfp4Block, per_expert = w.rows * w.cols / kNvfp4Block;
  bool finite = true;
  for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < blocks; b += (int64_t)gridDim.x * blockDim.x) {
    float x[kNvfp4Block];
    load_block<T, kNvfp4Block>(w.data, b * kNvfp4Block, aligned, x);
    finite &= all_finite(x, kNvfp4Block);
    const int64_t e = b / per_expert;
    const float g = nvfp4_global_scale(amax[e]);
    if (b == e * per_expert) gs[e] = g;
    uint8_t packed[kNvfp4Block / 2];
    nvfp4_block(x, g, scales + b, packed);
    uint2 out;
    out.x = packed[0] | packed[1] << 8 | packed[2] << 16 | (uint32_t)packed[3] << 24;
    out.y = packed[4] | packed[5] << 8 | packed[6] << 16 | (uint32_t)packed[7] << 24;
    reinterpret_cast<uint2*>(q)[b] = out;
  }
  if (!finite) atomicExch(bad, 1);
}

}  // namespace

void nvfp4_quantize_cuda(const WeightBatch& w, const float* amax, uint8_t* q, uint8_t* scales, float* global_scale,
                         int* bad, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  constexpr int kThreads = 256;
  const unsigned grid = grid_for(w.numel() / kNvfp4Block, kThreads);
  const bool al = aligned16(w.data);
  switch (w.type) {
    case InType::BF16: nvfp4_kernel<InType::BF16><<<grid, kThreads, 0, s>>>(w, al, amax, q, scales, global_scale, bad); break;
    case InType::F16: nvfp4_kernel<InType::F16><<<grid, kThreads, 0, s>>>(w, al, amax, q, scales, global_scale, bad); break;
    default: nvfp4_kernel<InType::F32><<<grid, kThreads, 0, s>>>(w, al, amax, q, scales, global_scale, bad); break;
  }
  cuda_check_last("nvfp4 quantize kernel");
}

}  // namespace moeq
