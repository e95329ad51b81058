#pragma once
// gpt-oss's MoE block: a biased router (top-k of the logits, softmax over those k) and biased
// experts (the loader de-interleaves gate and up, so do the biases here) with the clamped
// SwiGLU (up + 1) * g * sigmoid(alpha * g), g = min(gate, limit), up clamped to [-limit, limit].
#include <ATen/ATen.h>

#include "calib/forward/blocks.h"

namespace moeq::fwd {

// The feed-forward half of a layer over its normed input x [B, S, H].
at::Tensor clamped_swiglu_moe(const LayerRun& r, const at::Tensor& x, int64_t top_k, double limit);

}  // namespace moeq::fwd
