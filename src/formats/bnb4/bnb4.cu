// CUDA kernels for bitsandbytes NF4/FP4 (math in bnb4_kernels.h, format in bnb4.h).
// One launch quantizes every block of every expert: each group of TPB threads owns one
// block, holds its EPT elements per thread in registers (one read of the weight), reduces
// the absmax, then writes the packed codes.
#include <cuda_runtime.h>

#include <algorithm>

#include "formats/bnb4/bnb4_kernels.h"
#include "formats/cuda_check.h"
#include "formats/e2m1_kernels.cuh"
#include "formats/kernel_types.cuh"

namespace moeq::bnb {
namespace {

__constant__ uint32_t c_nf4_thresholds[15] = MOEQ_BNB_NF4_THRESHOLDS;
__constant__ uint32_t c_fp4_thresholds[7] = MOEQ_BNB_FP4_THRESHOLDS;
__constant__ uint32_t c_rcp_plus[32] = MOEQ_BNB_RCP_PLUS;
__constant__ uint32_t c_rcp_minus[32] = MOEQ_BNB_RCP_MINUS;
__constant__ uint32_t c_dynamic_map[256] = MOEQ_BNB_DYNAMIC_MAP;

__device__ __forceinline__ Tables device_tables() {
  return Tables{c_nf4_thresholds, c_fp4_thresholds, c_rcp_plus, c_rcp_minus, c_dynamic_map};
}

constexpr int kThreads = 256;

// Max over each group of TPB consecutive threads (TPB a power of two <= kThreads); every
// thread of the CTA must call it.
template <int TPB>
__device__ __forceinline__ float group_max(float v, float* smem) {
  constexpr int kWidth = TPB < 32 ? TPB : 32;
  for (int o = kWidth / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if constexpr (TPB > 32) {
    constexpr int kWarps = TPB / 32;
    const int warp = threadIdx.x >> 5, first = warp / kWarps * kWarps;
    __syncthreads();
    if ((threadIdx.x & 31) == 0) smem[warp] = v;
    __syncthreads();
    for (int i = 0; i < kWarps; ++i) v = fmaxf(v, smem[first + i]);
  }
  return v;
}

template <int TPB, int EPT>
__global__ void __launch_bounds__(kThreads) quantize_kernel(WeightBatch w, Layout l, bool nf4, uint8_t* q,
                                                            float* absmax, int* bad) {
  constexpr int kPerCta = kThreads / TPB;
  __shared__ float smem[kThreads / 32];
  const Tables t = device_tables();
  const int sub = threadIdx.x / TPB, lane = threadIdx.x % TPB;
  const int64_t nb = l.blocks(), total = l.experts * nb;
  for (int64_t g0 = blockIdx.x * (int64_t)kPerCta; g0 < total; g0 += (int64_t)gridDim.x * kPerCta) {
    const int64_t g = g0 + sub;
    const bool active = g < total;
    const int64_t e = active ? g / nb : 0, start = active ? (g % nb) * l.block : 0;
    const int64_t count = active ? min(l.block, l.n - start) : 0;
    const int64_t base = e * l.n + start;
    float v[EPT];
    float m = 0.f;
    bool finite = true;
#pragma unroll
    for (int k = 0; k < EPT; ++k) {
      const int idx = lane * EPT + k;
      const float x = idx < count ? load_elem(w, base + idx) : 0.f;  // past the end: bnb's zero padding
      finite &= isfinite(x);
      v[k] = ftz(x);
      m = fmaxf(m, fabsf(v[k]));
    }
    if (!finite) atomicExch(bad, 1);
    m = group_max<TPB>(m, smem);
    if (!active) continue;
    if (lane == 0) absmax[g] = m;
    const float inv = rcp_bnb(m, t);
    uint8_t* out = q + e * l.bytes() + start / 2;
#pragma unroll
    for (int k = 0; k < EPT; k += 2) {
      const int idx = lane * EPT + k;
      if (idx < count)
        out[idx / 2] = static_cast<uint8_t>(code4(ftz(v[k] * inv), nf4, t) << 4 | code4(ftz(v[k + 1] * inv), nf4, t));
    }
  }
}

// Vectorized path (16-byte aligned data, n a multiple of 32): each thread owns 32
// consecutive elements (four 16-byte loads of bf16, one 16-byte store of codes), TPB = block / 32
// neighbouring threads share a block. grid = (CTAs per expert, experts): no index division.
constexpr int kVecElems = 32;

template <InType T, int TPB, bool kNf4>
__global__ void __launch_bounds__(kThreads) quantize_vec_kernel(WeightBatch w, Layout l, uint8_t* q, float* absmax,
                                                                int* bad) {
  __shared__ float smem[kThreads / 32];
  const Tables t = device_tables();
  float th[kNf4 ? 15 : 7];  // the thresholds in registers for the binary searches
#pragma unroll
  for (int i = 0; i < (kNf4 ? 15 : 7); ++i) th[i] = u2f(kNf4 ? c_nf4_thresholds[i] : c_fp4_thresholds[i]);
  const int64_t e = blockIdx.y, nb = l.blocks();
  const int64_t chunks = nb * TPB;  // per expert, the last block's padding chunks included
  const int lane = threadIdx.x % TPB;
  bool finite = true;
  for (int64_t c0 = blockIdx.x * (int64_t)kThreads; c0 < chunks; c0 += (int64_t)gridDim.x * kThreads) {  // CTA-uniform
    const int64_t c = c0 + threadIdx.x, start = c * kVecElems;
    const bool has_data = c < chunks && start < l.n;
    float v[kVecElems];
    if (has_data) {
      load_block<T, kVecElems>(w.data, e * l.n + start, true, v);
    } else {
#pragma unroll
      for (int k = 0; k < kVecElems; ++k) v[k] = 0.f;  // bitsandbytes' zero padding
    }
    float m = 0.f;
#pragma unroll
    for (int k = 0; k < kVecElems; ++k) {
      finite &= isfinite(v[k]);
      v[k] = ftz(v[k]);
      m = fmaxf(m, fabsf(v[k]));
    }
    m = group_max<TPB>(m, smem);
    if (c >= chunks) continue;
    if (lane == 0) absmax[e * nb + c / TPB] = m;
    if (!has_data) continue;
    const float inv = rcp_bnb(m, t);
    uint32_t wd[4] = {0, 0, 0, 0};
#pragma unroll
    for (int k = 0; k < kVecElems; k += 2) {
      const uint32_t byte = kNf4 ? (nf4_code_search(ftz(v[k] * inv), th) << 4 | nf4_code_search(ftz(v[k + 1] * inv), th))
                                 : (fp4_code_search(ftz(v[k] * inv), th) << 4 | fp4_code_search(ftz(v[k + 1] * inv), th));
      wd[k / 8] |= byte << (8 * ((k / 2) % 4));
    }
    *reinterpret_cast<uint4*>(q + e * l.bytes() + start / 2) = make_uint4(wd[0], wd[1], wd[2], wd[3]);
  }
  if (!finite) atomicExch(bad, 1);
}

// One warp per nested block of 256 absmax values, 8 per lane.
__global__ void __launch_bounds__(kThreads) nested_kernel(const float* absmax, const float* offset, Layout l,
                                                          uint8_t* codes, float* nested) {
  const Tables t = device_tables();
  const int lane = threadIdx.x & 31;
  const int64_t nb = l.blocks(), nb2 = l.nested_blocks(), total = l.experts * nb2;
  const int64_t g = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  if (g >= total) return;  // whole warps leave together
  const int64_t e = g / nb2, start = (g % nb2) * kNestedBlock, count = min((int64_t)kNestedBlock, nb - start);
  const float* a = absmax + e * nb + start;
  float v[8];
  float m = 0.f;
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const int idx = lane * 8 + k;
    v[k] = idx < count ? ftz(a[idx] - offset[e]) : 0.f;
    m = fmaxf(m, fabsf(v[k]));
  }
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  if (lane == 0) nested[g] = m;
  const float inv = rcp_bnb(m, t);
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const int idx = lane * 8 + k;
    if (idx < count) codes[e * nb + start + idx] = dynamic_code(ftz(v[k] * inv), t);
  }
}

__global__ void rcp_approx_kernel(const float* in, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(in[i]));
    out[i] = r;
  }
}

template <int TPB, int EPT>
void launch(const WeightBatch& w, const Layout& l, bool nf4, uint8_t* q, float* absmax, int* bad, cudaStream_t s) {
  constexpr int kPerCta = kThreads / TPB;
  const int64_t total = l.experts * l.blocks();
  const int grid = static_cast<int>(std::min<int64_t>((total + kPerCta - 1) / kPerCta, 1 << 20));
  quantize_kernel<TPB, EPT><<<grid, kThreads, 0, s>>>(w, l, nf4, q, absmax, bad);
}

template <int TPB>
void launch_vec(const WeightBatch& w, const Layout& l, bool nf4, uint8_t* q, float* absmax, int* bad, cudaStream_t s) {
  const int64_t chunks = l.blocks() * TPB;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>((chunks + kThreads - 1) / kThreads, 4096)),
                  static_cast<unsigned>(l.experts));
  auto go = [&](auto kernel) { kernel<<<grid, kThreads, 0, s>>>(w, l, q, absmax, bad); };
  switch (w.type) {
    case InType::BF16: nf4 ? go(quantize_vec_kernel<InType::BF16, TPB, true>) : go(quantize_vec_kernel<InType::BF16, TPB, false>); break;
    case InType::F16: nf4 ? go(quantize_vec_kernel<InType::F16, TPB, true>) : go(quantize_vec_kernel<InType::F16, TPB, false>); break;
    default: nf4 ? go(quantize_vec_kernel<InType::F32, TPB, true>) : go(quantize_vec_kernel<InType::F32, TPB, false>); break;
  }
}

}  // namespace

void bnb4_quantize_cuda(const WeightBatch& w, const Layout& l, bool nf4, uint8_t* q, float* absmax, int* bad,
                        void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (aligned16(w.data) && l.n % kVecElems == 0 && l.experts < 65536) {
    switch (l.block) {  // TPB * 32 == block
      case 32: launch_vec<1>(w, l, nf4, q, absmax, bad, s); break;
      case 64: launch_vec<2>(w, l, nf4, q, absmax, bad, s); break;
      case 128: launch_vec<4>(w, l, nf4, q, absmax, bad, s); break;
      case 256: launch_vec<8>(w, l, nf4, q, absmax, bad, s); break;
      case 512: launch_vec<16>(w, l, nf4, q, absmax, bad, s); break;
      case 1024: launch_vec<32>(w, l, nf4, q, absmax, bad, s); break;
      case 2048: launch_vec<64>(w, l, nf4, q, absmax, bad, s); break;
      case 4096: launch_vec<128>(w, l, nf4, q, absmax, bad, s); break;
      default: break;  // validate() rejected it
    }
    cuda_check_last("bnb4 quantize kernel");
    return;
  }
  switch (l.block) {  // TPB * EPT == block
    case 32: launch<16, 2>(w, l, nf4, q, absmax, bad, s); break;
    case 64: launch<32, 2>(w, l, nf4, q, absmax, bad, s); break;
    case 128: launch<32, 4>(w, l, nf4, q, absmax, bad, s); break;
    case 256: launch<32, 8>(w, l, nf4, q, absmax, bad, s); break;
    case 512: launch<64, 8>(w, l, nf4, q, absmax, bad, s); break;
    case 1024: launch<128, 8>(w, l, nf4, q, absmax, bad, s); break;
    case 2048: launch<256, 8>(w, l, nf4, q, absmax, bad, s); break;
    case 4096: launch<256, 16>(w, l, nf4, q, absmax, bad, s); break;
    default: break;  // validate() rejected it
  }
  cuda_check_last("bnb4 quantize kernel");
}

void bnb4_nested_cuda(const float* absmax, const float* offset, const Layout& l, uint8_t* codes, float* nested,
                      void* stream) {
  const int64_t warps = l.experts * l.nested_blocks();
  const int64_t grid = (warps * 32 + kThreads - 1) / kThreads;
  nested_kernel<<<static_cast<unsigned>(grid), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(absmax, offset, l,
                                                                                                 codes, nested);
  cuda_check_last("bnb4 nested absmax kernel");
}

void rcp_approx_cuda(const float* in, float* out, int64_t n, void* stream) {
  rcp_approx_kernel<<<1024, 256, 0, static_cast<cudaStream_t>(stream)>>>(in, out, n);
  cuda_check_last("rcp.approx kernel");
}

}  // namespace moeq::bnb
