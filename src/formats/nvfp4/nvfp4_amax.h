#pragma once
// The amax a caller gives NVFP4's quantize (shared by a fused gate/up pair, or from calibration),
// checked and placed on the device: the quantize in this folder and the fused source -> NVFP4
// kernels (tensor/source_nvfp4) accept the same shapes and values.
#include <ATen/ATen.h>

namespace moeq {

// amax: [] for a 2D weight (was_2d), [experts] for a stack; finite and non-negative, else a
// one-line error. Returns `experts` floats on `device`.
at::Tensor nvfp4_given_amax(const at::Tensor& amax, int64_t experts, bool was_2d, const at::Device& device);

}  // namespace moeq
