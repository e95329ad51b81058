// CUDA kernels decoding FP8-block and MXFP4 source checkpoints (math: io/source_dequant.h).
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include "formats/cuda_check.h"
#include "formats/source_dequant_kernels.h"

namespace moeq {
namespace {

__device__ __forceinline__ float fp8_e4m3_to_float(uint8_t b) {
  __nv_fp8_e4m3 v;
  v.__x = b;
  return static_cast<float>(v);
}

__device__ __forceinline__ uint16_t bf16_bits(float f) {
  const __nv_bfloat16 h = __float2bfloat16_rn(f);
  return *reinterpret_cast<const uint16_t*>(&h);
}

// One CUDA block per row (over all experts), threads over the columns, 4 consecutive columns
// per thread (one 32-bit load of codes, one 64-bit store).
__global__ void fp8_block_dequant_kernel(const uint8_t* __restrict__ w, const void* __restrict__ scale, bool scale_bf16,
                                         int64_t R, int C, int bm, int bn, uint16_t* __restrict__ out) {
  const int64_t row = blockIdx.x;  // e * R + r
  const int64_t SR = (R + bm - 1) / bm, SC = (C + bn - 1) / bn;
  const int64_t srow = (row / R) * SR + (row % R) / bm;
  const uint8_t* wr = w + row * C;
  uint16_t* orow = out + row * C;
  const bool vec = (C % 4) == 0 && (bn % 4) == 0;
  for (int c0 = 4 * threadIdx.x; c0 < C; c0 += 4 * blockDim.x) {
    const int64_t si = srow * SC + c0 / bn;
    const float s = scale_bf16 ? __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(scale)[si])
                               : reinterpret_cast<const float*>(scale)[si];
    if (vec) {
      const uchar4 q = *reinterpret_cast<const uchar4*>(wr + c0);
      ushort4 o;
      o.x = bf16_bits(__fmul_rn(fp8_e4m3_to_float(q.x), s));
      o.y = bf16_bits(__fmul_rn(fp8_e4m3_to_float(q.y), s));
      o.z = bf16_bits(__fmul_rn(fp8_e4m3_to_float(q.z), s));
      o.w = bf16_bits(__fmul_rn(fp8_e4m3_to_float(q.w), s));
      *reinterpret_cast<ushort4*>(orow + c0) = o;
    } else {
      for (int c = c0; c < c0 + 4 && c < C; ++c) {
        const int64_t sj = srow * SC + c / bn;
        const float sc = scale_bf16 ? __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(scale)[sj])
                                    : reinterpret_cast<const float*>(scale)[sj];
        orow[c] = bf16_bits(__fmul_rn(fp8_e4m3_to_float(wr[c]), sc));
      }
    }
  }
}

__constant__ float kE2m1[16] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f, -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};

__global__ void mxfp4_dequant_kernel(const uint8_t* __restrict__ blocks, const uint8_t* __restrict__ scales, int64_t R,
                                     int64_t G, uint16_t* __restrict__ out, int* bad) {
  const int64_t total = R * G * 16;  // one thread per byte (two outputs)
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const uint8_t s = scales[i / 16];
    if (s == 0xFF) atomicExch(bad, 1);
    const int ex = static_cast<int>(s) - 127;
    const uint8_t b = blocks[i];
    out[2 * i] = bf16_bits(ldexpf(kE2m1[b & 15], ex));
    out[2 * i + 1] = bf16_bits(ldexpf(kE2m1[b >> 4], ex));
  }
}

int grid_for(int64_t n, int threads) {
  const int64_t g = (n + threads - 1) / threads;
  return static_cast<int>(g < 65535 * 32 ? (g > 0 ? g : 1) : 65535 * 32);
}

}  // namespace

void fp8_block_dequant_cuda(const uint8_t* w, const void* scale, bool scale_bf16, int64_t E, int64_t R, int64_t C,
                            int64_t bm, int64_t bn, uint16_t* out_bf16, void* stream) {
  if (E * R == 0 || C == 0) return;
  const int threads = 256;
  fp8_block_dequant_kernel<<<static_cast<unsigned>(E * R), threads, 0, static_cast<cudaStream_t>(stream)>>>(
      w, scale, scale_bf16, R, static_cast<int>(C), static_cast<int>(bm), static_cast<int>(bn), out_bf16);
  cuda_check_last("fp8-block dequantize kernel");
}

void mxfp4_dequant_cuda(const uint8_t* blocks, const uint8_t* scales, int64_t R, int64_t G, uint16_t* out_bf16,
                        int* bad, void* stream) {
  if (R * G == 0) return;
  const int threads = 256;
  mxfp4_dequant_kernel<<<grid_for(R * G * 16, threads), threads, 0, static_cast<cudaStream_t>(stream)>>>(
      blocks, scales, R, G, out_bf16, bad);
  cuda_check_last("mxfp4 dequantize kernel");
}

}  // namespace moeq
