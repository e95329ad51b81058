// Fused quantized-source -> NVFP4 kernels (source_nvfp4_kernels.h): two passes over the source
// bytes (FP8 block: 1 byte an element; MXFP4: half a byte), never a bf16 stack:
//   1. abs-max: per expert, the max |x| of the decoded elements (each decoded to bf16 as the
//      decode kernels do), one atomic max per CUDA block;
//   2. quantize: each thread decodes one 16-element NVFP4 block and quantizes it with the
//      NVFP4 kernel's block math (nvfp4/nvfp4.h: scale code, division-free E2M1 codes).
// A CUDA block takes a run of whole rows of one expert (grid: row runs x experts) and its
// threads walk the run's 16-element units; a unit never straddles a source scale (16 columns
// of one FP8 block, bn % 16 == 0; half of one 32-element MXFP4 group), so each unit loads one
// scale and 16 (FP8) or 8 (MXFP4) code bytes.
#include <cuda_runtime.h>

#include <algorithm>

#include "core/error.h"
#include "formats/cuda_check.h"
#include "formats/e2m1_kernels.cuh"
#include "formats/kernel_types.cuh"
#include "formats/nvfp4/nvfp4.h"
#include "formats/source_decode.cuh"
#include "formats/source_nvfp4_kernels.h"

namespace moeq {
namespace {

constexpr int kThreads = 128;
constexpr int64_t kUnitsPerBlock = 2048;  // 16-element units a CUDA block takes (16 per thread)
constexpr float kFloatMax = 3.40282347e38f;

struct Fp8Src {
  Fp8BlockStack s;
  int64_t SR, SC;
  bool aligned;  // w 16-byte aligned (then every unit is: C % 16 == 0)
  __device__ int64_t rows() const { return s.R; }
  __device__ int64_t cols() const { return s.C; }
  // x = the 16 decoded elements of row r of expert e from column 16 u; false on a bad scale.
  __device__ __forceinline__ bool load16(int64_t e, int64_t r, int64_t u, float* x) const {
    const int64_t c0 = 16 * u;
    const uint8_t* p = s.w + (e * s.R + r) * s.C + c0;
    // 32-bit divisions (fp8_src checks R and C < 2^31)
    const uint32_t sr = static_cast<uint32_t>(r) / static_cast<uint32_t>(s.bm);
    const uint32_t scol = static_cast<uint32_t>(c0) / static_cast<uint32_t>(s.bn);
    const float sc = load_block_scale(s.scale, s.scale_bf16, (e * SR + sr) * SC + scol);
    uint8_t b[16];
    if (aligned) {
      const uint4 v = *reinterpret_cast<const uint4*>(p);
      const uint32_t w4[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int i = 0; i < 16; ++i) b[i] = static_cast<uint8_t>(w4[i / 4] >> (8 * (i % 4)));
    } else {
#pragma unroll
      for (int i = 0; i < 16; ++i) b[i] = p[i];
    }
#pragma unroll
    for (int i = 0; i < 16; ++i) x[i] = __uint_as_float(static_cast<uint32_t>(fp8_block_bits(b[i], sc)) << 16);
    return true;
  }
};

struct Mxfp4Src {
  Mxfp4Stack s;
  bool aligned;  // blocks 8-byte aligned (then every unit is: a row is C/2 = 16 G bytes)
  __device__ int64_t rows() const { return s.R; }
  __device__ int64_t cols() const { return s.C; }
  __device__ __forceinline__ bool load16(int64_t e, int64_t r, int64_t u, float* x) const {
    const int64_t row = e * s.R + r;
    const uint8_t* p = s.blocks + row * (s.C / 2) + 8 * u;  // elements 16u .. 16u + 15
    const uint32_t ex = s.scales[row * (s.C / 32) + u / 2];
    const float sc = e8m0_value(ex);
    uint8_t b[8];
    if (aligned) {
      const uint2 v = *reinterpret_cast<const uint2*>(p);
#pragma unroll
      for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>((i < 4 ? v.x : v.y) >> (8 * (i % 4)));
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) b[i] = p[i];
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      x[2 * i] = __uint_as_float(static_cast<uint32_t>(mxfp4_bits(b[i] & 15u, sc)) << 16);
      x[2 * i + 1] = __uint_as_float(static_cast<uint32_t>(mxfp4_bits(b[i] >> 4, sc)) << 16);
    }
    return ex != 0xFFu;
  }
};

// The units of this CUDA block: rows [r0, r0 + rows_per_block) of expert e0 + blockIdx.y, as
// n = (rows in the run) * U units (U = cols / 16 per row; n < 2^31, see launch()).
struct Run {
  int64_t e, r0;
  uint32_t n, U;
};

template <class Src>
__device__ __forceinline__ Run block_run(const Src& src, int64_t e0, int64_t rows_per_block) {
  Run run;
  run.e = e0 + blockIdx.y;
  run.r0 = static_cast<int64_t>(blockIdx.x) * rows_per_block;
  run.U = static_cast<uint32_t>(src.cols() / 16);
  const int64_t left = src.rows() - run.r0;
  run.n = static_cast<uint32_t>(left < rows_per_block ? left : rows_per_block) * run.U;
  return run;
}

template <class Src>
__global__ void __launch_bounds__(kThreads) source_absmax_kernel(Src src, int64_t e0, int64_t rows_per_block,
                                                                 float* amax, int* bad) {
  const Run run = block_run(src, e0, rows_per_block);
  float m = 0.f;
  bool scale_ok = true;
  for (uint32_t k = threadIdx.x; k < run.n; k += blockDim.x) {
    const uint32_t dr = k / run.U;
    float x[16];
    scale_ok &= src.load16(run.e, run.r0 + dr, k - dr * run.U, x);
    m = max_nan(m, absmax_nan(x, 16));
  }
  if (!scale_ok) atomicOr(bad, kSourceBadScale);
  const bool finite = m <= kFloatMax;  // false for NaN and Inf
  if (!finite) atomicOr(bad, kSourceNonFinite);
  const float b = block_max(finite ? m : 0.f);  // every thread takes part (__syncthreads inside)
  if (threadIdx.x == 0) atomic_max_nonneg(amax + run.e, b);
}

template <class Src>
__global__ void __launch_bounds__(kThreads) source_nvfp4_kernel(Src src, int64_t e0, int64_t rows_per_block,
                                                                const float* amax, uint8_t* q, uint8_t* scales,
                                                                float* gs, int* bad) {
  const Run run = block_run(src, e0, rows_per_block);
  const float g = nvfp4_global_scale(amax[run.e]);
  if (blockIdx.x == 0 && threadIdx.x == 0) gs[run.e] = g;
  bool finite = true, scale_ok = true;
  for (uint32_t k = threadIdx.x; k < run.n; k += blockDim.x) {
    const uint32_t dr = k / run.U, u = k - dr * run.U;
    const int64_t r = run.r0 + dr;
    float x[16];
    scale_ok &= src.load16(run.e, r, u, x);
    const float bmax = absmax_nan(x, 16);
    finite &= bmax <= kFloatMax;
    const uint8_t sc = nvfp4_scale_code(bmax, g);
    const int64_t blk = (run.e * src.rows() + r) * run.U + u;  // the unit's 16-block in the stack
    scales[blk] = sc;
    uint32_t wd[2];
    nvfp4_codes_fast(x, fp8_e4m3_decode(sc) * g, wd);
    reinterpret_cast<uint2*>(q)[blk] = make_uint2(wd[0], wd[1]);
  }
  if (!finite) atomicOr(bad, kSourceNonFinite);
  if (!scale_ok) atomicOr(bad, kSourceBadScale);
}

// Runs of whole rows holding about kUnitsPerBlock units; experts in chunks of 65535 (grid.y).
template <class Src, class Launch>
void launch(const Src& src, int64_t E, int64_t R, int64_t C, const char* what, Launch&& go) {
  if (E == 0 || R == 0 || C == 0) return;
  if (C % 16 != 0) throw Error(std::string(what) + ": columns " + std::to_string(C) + " not a multiple of 16");
  const int64_t U = C / 16;
  if (U >= (int64_t{1} << 30)) throw Error(std::string(what) + ": rows of " + std::to_string(C) + " columns are too long");
  const int64_t rows_per_block = std::max<int64_t>(1, std::min<int64_t>(R, kUnitsPerBlock / U));
  const int64_t runs = (R + rows_per_block - 1) / rows_per_block;
  for (int64_t e0 = 0; e0 < E; e0 += 65535) {
    const dim3 grid(static_cast<unsigned>(runs), static_cast<unsigned>(std::min<int64_t>(65535, E - e0)));
    go(grid, e0, rows_per_block);
  }
  cuda_check_last(what);
}

Fp8Src fp8_src(const Fp8BlockStack& s) {
  if (s.bm <= 0 || s.bn <= 0 || s.bn % 16 != 0)
    throw Error("fp8-block -> nvfp4 kernel: block [" + std::to_string(s.bm) + ", " + std::to_string(s.bn) +
                "] needs block columns a multiple of 16");
  if (s.R >= (int64_t{1} << 31) || s.C >= (int64_t{1} << 31) || s.bm >= (int64_t{1} << 31) || s.bn >= (int64_t{1} << 31))
    throw Error("fp8-block -> nvfp4 kernel: rows, columns and blocks must be below 2^31");
  return Fp8Src{s, (s.R + s.bm - 1) / s.bm, (s.C + s.bn - 1) / s.bn, aligned16(s.w)};
}

Mxfp4Src mxfp4_src(const Mxfp4Stack& s) {
  if (s.C % 32 != 0) throw Error("mxfp4 -> nvfp4 kernel: columns " + std::to_string(s.C) + " not a multiple of 32");
  return Mxfp4Src{s, (reinterpret_cast<uintptr_t>(s.blocks) & 7u) == 0};
}

template <class Src>
void absmax(const Src& src, int64_t E, int64_t R, int64_t C, float* amax, int* bad, void* stream, const char* what) {
  const auto st = static_cast<cudaStream_t>(stream);
  launch(src, E, R, C, what, [&](dim3 grid, int64_t e0, int64_t rpb) {
    source_absmax_kernel<Src><<<grid, kThreads, 0, st>>>(src, e0, rpb, amax, bad);
  });
}

template <class Src>
void quantize(const Src& src, int64_t E, int64_t R, int64_t C, const float* amax, uint8_t* q, uint8_t* scales,
              float* gs, int* bad, void* stream, const char* what) {
  if ((reinterpret_cast<uintptr_t>(q) & 7u) != 0) throw Error(std::string(what) + ": packed output not 8-byte aligned");
  const auto st = static_cast<cudaStream_t>(stream);
  launch(src, E, R, C, what, [&](dim3 grid, int64_t e0, int64_t rpb) {
    source_nvfp4_kernel<Src><<<grid, kThreads, 0, st>>>(src, e0, rpb, amax, q, scales, gs, bad);
  });
}

}  // namespace

void source_absmax_cuda(const Fp8BlockStack& s, float* amax, int* bad, void* stream) {
  absmax(fp8_src(s), s.E, s.R, s.C, amax, bad, stream, "fp8-block abs-max kernel");
}

void source_absmax_cuda(const Mxfp4Stack& s, float* amax, int* bad, void* stream) {
  absmax(mxfp4_src(s), s.E, s.R, s.C, amax, bad, stream, "mxfp4 abs-max kernel");
}

void source_nvfp4_cuda(const Fp8BlockStack& s, const float* amax, uint8_t* q, uint8_t* scales, float* global_scale,
                       int* bad, void* stream) {
  quantize(fp8_src(s), s.E, s.R, s.C, amax, q, scales, global_scale, bad, stream, "fp8-block -> nvfp4 kernel");
}

void source_nvfp4_cuda(const Mxfp4Stack& s, const float* amax, uint8_t* q, uint8_t* scales, float* global_scale,
                       int* bad, void* stream) {
  quantize(mxfp4_src(s), s.E, s.R, s.C, amax, q, scales, global_scale, bad, stream, "mxfp4 -> nvfp4 kernel");
}

}  // namespace moeq
