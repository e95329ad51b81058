#pragma once
// The MoE block of DeepSeek-V3 and GLM-4 MoE: a sigmoid router whose choice (not its
// weights) adds e_score_correction_bias, limited to the best `topk_group` of `n_group` expert
// groups (a group scores the sum of its two best biased scores); the chosen sigmoid scores
// are optionally renormalized, then scaled by routed_scaling_factor. Routed experts plus
// shared experts (`shared_experts.*`); layers without a router run a dense MLP (`mlp.*`).
#include <ATen/ATen.h>

#include "calib/forward/blocks.h"
#include "model/decoder_spec.h"

namespace moeq::fwd {

// The router's knobs: RouterSpec (model/decoder_spec.h) with kind SigmoidGroupTopk (top_k,
// n_group, topk_group, renormalize, scaling).
using SigmoidRouterSpec = RouterSpec;

// logits [T, E] (float32), bias [E] (may be undefined): ids [T, k], weights [T, k] float32.
Routing sigmoid_group_topk(const at::Tensor& logits, const at::Tensor& bias, const SigmoidRouterSpec& s);

// The feed-forward half of a layer over its normed input x [B, S, H]. The router runs in
// float32 on `router` with `mlp.gate.e_score_correction_bias`.
at::Tensor sigmoid_moe(const LayerRun& r, const at::Tensor& x, const SigmoidRouterSpec& s, const Activation& act);

}  // namespace moeq::fwd
