// CUDA kernel for MXFP4 (math in mxfp4.h, shared with the CPU kernel). One launch for the
// whole stack, one thread per 32-element block: read, block amax, E8M0 scale, round, pack.
#include "formats/cuda_check.h"
#include "formats/e2m1_kernels.cuh"
#include "formats/mxfp4/mxfp4.h"

namespace moeq {
namespace {

template <InType T>
__global__ void mxfp4_kernel(WeightBatch w, bool aligned, uint8_t* q, uint8_t* scales, int* bad) {
  const int64_t blocks = w.numel() / kMxfp4Block;
  bool finite = true;
  for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < blocks; b += (int64_t)gridDim.x * blockDim.x) {
    float x[kMxfp4Block];
    load_block<T, kMxfp4Block>(w.data, b * kMxfp4Block, aligned, x);
    const float bmax = absmax_nan(x, kMxfp4Block);
    finite &= bmax <= 3.40282347e38f;
    uint32_t words[4];
    scales[b] = mxfp4_codes_fast(x, bmax, words);
    reinterpret_cast<uint4*>(q)[b] = make_uint4(words[0], words[1], words[2], words[3]);
  }
  if (!finite) atomicExch(bad, 1);
}

}  // namespace

void mxfp4_quantize_cuda(const WeightBatch& w, uint8_t* q, uint8_t* scales, int* bad, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  constexpr int kThreads = 256;
  const unsigned grid = grid_for(w.numel() / kMxfp4Block, kThreads);
  const bool al = aligned16(w.data);
  switch (w.type) {
    case InType::BF16: mxfp4_kernel<InType::BF16><<<grid, kThreads, 0, s>>>(w, al, q, scales, bad); break;
    case InType::F16: mxfp4_kernel<InType::F16><<<grid, kThreads, 0, s>>>(w, al, q, scales, bad); break;
    default: mxfp4_kernel<InType::F32><<<grid, kThreads, 0, s>>>(w, al, q, scales, bad); break;
  }
  cuda_check_last("mxfp4 quantize kernel");
}

}  // namespace moeq
