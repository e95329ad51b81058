// CUDA kernels for NVFP4 (math in nvfp4.h, shared with the CPU kernel; the division-free
// codes in e2m1_fast.h). Fast path (aligned data, experts a multiple of 32 elements):
// amax_quantize.cuh's abs-max pass then quantize pass, each thread taking two 16-element
// blocks per step: 64 bytes of bf16 in (four 16-byte loads), 16 bytes of codes and 2 scale
// bytes out. Fallback: the same abs-max pass, then one thread per block (scalar loads).
#include "formats/cuda_check.h"
#include "formats/e2m1_kernels.cuh"
#include "formats/amax_quantize.cuh"
#include "formats/fp8/fp8.h"
#include "formats/nvfp4/nvfp4.h"

namespace moeq {
namespace {

struct Nvfp4Q {
  uint8_t* q;
  uint8_t* scales;
  float* gs;
  static constexpr int kUnit = 2 * kNvfp4Block;
  using Param = float;  // the global scale
  template <InType T>
  __device__ float param(float amax) const { return nvfp4_global_scale(amax); }
  __device__ void head(int64_t e, float g) const { gs[e] = g; }
  __device__ __forceinline__ bool unit(const float* x, int64_t first, float g) const {
    uint32_t wd[4];
    uint32_t sc = 0;
    bool finite = true;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float bmax = absmax_nan(x + h * kNvfp4Block, kNvfp4Block);
      finite &= bmax <= 3.40282347e38f;  // false for Inf and NaN
      const uint8_t s = nvfp4_scale_code(bmax, g);
      sc |= static_cast<uint32_t>(s) << (8 * h);
      nvfp4_codes_fast(x + h * kNvfp4Block, fp8_e4m3_decode(s) * g, wd + 2 * h);
    }
    *reinterpret_cast<uint4*>(q + first / 2) = make_uint4(wd[0], wd[1], wd[2], wd[3]);
    *reinterpret_cast<uint16_t*>(scales + first / kNvfp4Block) = static_cast<uint16_t>(sc);
    return finite;
  }
};

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
    const uint8_t s = nvfp4_scale_code(absmax_nan(x, kNvfp4Block), g);
    scales[b] = s;
    uint32_t wd[2];
    nvfp4_codes_fast(x, fp8_e4m3_decode(s) * g, wd);
    reinterpret_cast<uint2*>(q)[b] = make_uint2(wd[0], wd[1]);
  }
  if (!finite) atomicExch(bad, 1);
}

}  // namespace

void nvfp4_quantize_cuda(const WeightBatch& w, const float* given_amax, int* scratch, uint8_t* q, uint8_t* scales,
                         float* global_scale, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  int* bad = scratch + 2 * w.experts;
  if (fused_applies(w, Nvfp4Q::kUnit)) {
    launch_amax_quantize(w, given_amax, scratch, Nvfp4Q{q, scales, global_scale}, s, "nvfp4 quantize kernel");
    return;
  }
  const float* amax = given_amax;
  if (!amax) {
    absmax_cuda(w, false, reinterpret_cast<float*>(scratch), bad, stream);
    amax = reinterpret_cast<const float*>(scratch);
  }
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
