#pragma once
// AWQ on attention (docs/awq.md), one layer at a time, after planning (attach_awq_scales):
// - o_proj's input (inputs: o): the attention output. Its channel (h, d) is head h's weighted sum
//   of channel d of its kv head's v, so the scale folds into v_proj's row (g, d) (and bias) when the
//   heads of one kv group share it: x_mean and w_mean are averaged over the group's heads before
//   awq_lite's grid (awq_tie_heads), so s is equal over the group. Searched first (its fold
//   changes v's rows, which the input search then sees, as down's fold does for gate_up), then
//   renormalised so the folded v keeps its amax (v shares q/k's NVFP4 global scale).
// - q/k/v's input (inputs: qkv): the output of the norm before attention, read by q/k/v (MLA:
//   q or q_a, kv_a; the delta net: its input projections). One scale per layer, folded into the
//   norm; the search is awq_shared_search on the readers quantized with awq (their rows stacked,
//   one Hessian: they share their input) and every other reader is compensated (columns x s).
// Both use the Hessians of `moeq calibrate --gptq-hessians` (linears.SITE, H = 2/n X^T X) and the
// format's max path. A layer where s = 1 wins, or whose fold the family does not allow (Gemma4's
// v_norm, MLA's o_proj, ...; an error when the recipe names the input), keeps s = 1 and is listed.
#include <ATen/ATen.h>

#include <vector>

#include "calib/calibrators/awq_job.h"
#include "model/model.h"
#include "recipe/recipe.h"

namespace moeq {

// x [kv_heads * group * head_dim] -> the mean over each kv group's heads, repeated over them.
at::Tensor awq_tie_heads(const at::Tensor& x, int64_t kv_heads, int64_t group, int64_t head_dim);

// The scales of `layer`'s attention awq sites (non-empty, one layer), added to out.layers[layer];
// fallbacks appended. Throws moeq::Error naming the site or the layer on a refused fold the
// recipe asked for, missing Hessians, or readers of one input in different formats.
void attach_attention_scales(AwqScales& out, int64_t layer, const std::vector<const SitePlan*>& sites, const Model& model,
                             const at::Device& dev);

}  // namespace moeq
