#pragma once
// Exact MXFP4 -> NVFP4 for experts published in MXFP4 (gpt-oss). An MXFP4 block of 32 codes
// c_i with scale 2^k is, in NVFP4, two 16-blocks with the same codes and block scale
// 2^(k - m) under the global scale weight_scale_2 = 2^m: exact where 2^(k - m) is an E4M3 value,
// i.e. k - m in [-9, 8] (2^-9 the smallest subnormal, 2^8 the largest power of two below 448).
// m is chosen per expert, shared by its gate and up (one weight_scale_2 for the fused pair):
// m = kmax - 8, so no block saturates; blocks below 2^(m - 9) (and only they) are re-quantized
// from their decoded values with ModelOpt's NVFP4 block rule under that global scale.
// The NVFP4 kernel then quantizes with these block scales (QuantFormat::quantize_with_block_scales):
// x / (2^(k - m) * 2^m) is the E2M1 value itself, so the codes are the MXFP4 codes.
#include <ATen/ATen.h>

#include <optional>
#include <vector>

#include "io/checkpoint.h"
#include "recipe/site_batch.h"

namespace moeq {

struct Mxfp4ToNvfp4 {
  at::Tensor amax;                       // per expert [E] (or [] for one site): 2688 * 2^m
  std::vector<at::Tensor> block_scales;  // per batch: E4M3 bytes (uint8) [.., out, in/16]
  int64_t exact_blocks = 0;              // MXFP4 32-blocks carried over exactly
  int64_t requantized_blocks = 0;        // blocks whose scale did not fit, quantized again
};

// The conversion for a job (recipe/site_batch.h) whose every site is an MXFP4 source quantized to
// NVFP4; nullopt for any other job. stacks: the job's decoded stacks (any device).
std::optional<Mxfp4ToNvfp4> plan_mxfp4_to_nvfp4(const Checkpoint& ck, const std::vector<SiteBatch>& job,
                                                const std::vector<at::Tensor>& stacks);

}  // namespace moeq
