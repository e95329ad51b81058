// CUDA kernels decoding FP8-block and MXFP4 source checkpoints (math: tensor/source_dequant.h).
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include "formats/cuda_check.h"
#include "formats/source_decode.cuh"
#include "formats/source_dequant_kernels.h"

namespace moeq {
namespace {

// One CUDA block per row (over all experts), threads over the columns, 4 consecutive columns
// per thread (one 32-bit load of codes, one 64-bit store).
__global__ void fp8_block_dequant_kernel(const uint8_t* __restrict__ w, const void* __restrict__ scale, bool scale_bf16,
                                         int64_t R, int C, int bm, int bn, bool aligned, uint16_t* __restrict__ out) {
  const int64_t row = blockIdx.x;  // e * R + r
  const int64_t SR = (R + bm - 1) / bm, SC = (C + bn - 1) / bn;
  const int64_t srow = (row / R) * SR + (row % R) / bm;
  const uint8_t* wr = w + row * C;
  uint16_t* orow = out + row * C;
  const bool vec = aligned && (C % 4) == 0 && (bn % 4) == 0;  // aligned: w 4 bytes, out 8 bytes
  for (int c0 = 4 * threadIdx.x; c0 < C; c0 += 4 * blockDim.x) {
    const int64_t si = srow * SC + c0 / bn;
    const float s = load_block_scale(scale, scale_bf16, si);
    if (vec) {
      const uchar4 q = *reinterpret_cast<const uchar4*>(wr + c0);
      ushort4 o;
      o.x = fp8_block_bits(q.x, s);
      o.y = fp8_block_bits(q.y, s);
      o.z = fp8_block_bits(q.z, s);
      o.w = fp8_block_bits(q.w, s);
      *reinterpret_cast<ushort4*>(orow + c0) = o;
    } else {
      for (int c = c0; c < c0 + 4 && c < C; ++c) {
        const int64_t sj = srow * SC + c / bn;
        const float sc = load_block_scale(scale, scale_bf16, sj);
        orow[c] = fp8_block_bits(wr[c], sc);
      }
    }
  }
}

// MXFP4, vector path: one thread per 4 code bytes (8 outputs: one 32-bit load, one 16-byte
// store; a warp reads 128 and writes 512 contiguous bytes); the 4 bytes lie in one 16-byte group,
// so one E8M0 scale. Needs blocks 4-byte and out 16-byte aligned.
__global__ void mxfp4_dequant_vec_kernel(const uint8_t* __restrict__ blocks, const uint8_t* __restrict__ scales,
                                         int64_t words, uint16_t* __restrict__ out, int* bad) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < words; i += (int64_t)gridDim.x * blockDim.x) {
    const uint32_t e = scales[i >> 2];  // 4 words per 16-byte group
    if (e == 0xFFu) atomicExch(bad, 1);
    const float sc = e8m0_value(e);
    const uint32_t b = reinterpret_cast<const uint32_t*>(blocks)[i];
    uint32_t o[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {  // byte k: elements 2k (low nibble) and 2k + 1
      const uint32_t byte = (b >> (8 * k)) & 0xFFu;
      o[k] = static_cast<uint32_t>(mxfp4_bits(byte & 15u, sc)) | (static_cast<uint32_t>(mxfp4_bits(byte >> 4, sc)) << 16);
    }
    reinterpret_cast<uint4*>(out)[i] = make_uint4(o[0], o[1], o[2], o[3]);
  }
}

// MXFP4, any alignment: one thread per code byte (two outputs).
__global__ void mxfp4_dequant_kernel(const uint8_t* __restrict__ blocks, const uint8_t* __restrict__ scales, int64_t R,
                                     int64_t G, uint16_t* __restrict__ out, int* bad) {
  const int64_t total = R * G * 16;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const uint32_t e = scales[i / 16];
    if (e == 0xFFu) atomicExch(bad, 1);
    const float sc = e8m0_value(e);
    const uint8_t b = blocks[i];
    out[2 * i] = mxfp4_bits(b & 15u, sc);
    out[2 * i + 1] = mxfp4_bits(b >> 4, sc);
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
      w, scale, scale_bf16, R, static_cast<int>(C), static_cast<int>(bm), static_cast<int>(bn),
      (reinterpret_cast<uintptr_t>(w) & 3u) == 0 && (reinterpret_cast<uintptr_t>(out_bf16) & 7u) == 0, out_bf16);
  cuda_check_last("fp8-block dequantize kernel");
}

void mxfp4_dequant_cuda(const uint8_t* blocks, const uint8_t* scales, int64_t R, int64_t G, uint16_t* out_bf16,
                        int* bad, void* stream) {
  if (R * G == 0) return;
  const int threads = 256;
  const auto st = static_cast<cudaStream_t>(stream);
  const bool vec = (reinterpret_cast<uintptr_t>(blocks) & 3u) == 0 && (reinterpret_cast<uintptr_t>(out_bf16) & 15u) == 0;
  if (vec)
    mxfp4_dequant_vec_kernel<<<grid_for(R * G * 4, threads), threads, 0, st>>>(blocks, scales, R * G * 4, out_bf16, bad);
  else
    mxfp4_dequant_kernel<<<grid_for(R * G * 16, threads), threads, 0, st>>>(blocks, scales, R, G, out_bf16, bad);
  cuda_check_last("mxfp4 dequantize kernel");
}

}  // namespace moeq
