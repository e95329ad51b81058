#pragma once
// Where the AWQ scales of the routed experts' gate/up input fold (docs/awq.md): the norm before
// the MoE and every other reader of its output, as the family's plugin declares them
// (model/decoder_spec.h FeedForwardSpec::expert_input). The folded source is the source with
//   norm w -> w / s (or (1 + w) / s - 1),  every reader's columns x s  (router, shared experts),
//   routed experts: gate and up columns x s_gate_up, up rows / s_down, down columns x s_down;
// and for attention (awq_attn.h)
//   input norm w -> w / s_in, its readers' columns x s_in (q/k/v; MLA's q_a/kv_a; the delta net's
//   input projections), v_proj's rows (g, d) and bias / s_o[g, d], o_proj's columns (h, d) x s_o[g(h), d];
// unquantized, it computes the source's function (tests/quant/test_awq_fold.cpp, every family).
#include <ATen/ATen.h>

#include <map>
#include <set>
#include <string>

#include "io/checkpoint.h"
#include "model/model.h"
#include "model/site.h"

namespace moeq {

class AwqScales;

struct AwqNormFold {
  std::string norm_tensor;        // stored name of the norm's weight
  bool one_plus = false;          // a (1 + w) norm
  std::set<std::string> readers;  // non-expert sites that read its output (columns x s)
};

// o_proj's input folded into v_proj's rows (model/decoder_spec.h VoFold).
struct AwqVoFold {
  std::string v_site, o_site;  // site names
  std::string v_bias;          // stored name of v_proj's bias ("" when it has none)
  int64_t kv_heads = 0, group = 1, head_dim = 0;  // o's input is [kv_heads * group * head_dim]
};

// The fold of `layer`'s expert input. Throws moeq::Error, one line naming the family, the layer
// and why, when the family declares no exact fold or the declared norm is not in the checkpoint.
AwqNormFold awq_norm_fold(const Model& model, int64_t layer);
// The fold of `layer`'s attention input (LayerKind::attn_input), and of o_proj's input into v_proj
// (LayerKind::attn_output, refused where the attention spec makes it inexact: v_norm, k_eq_v,
// clip_qkv, no v_proj / o_proj pair). Throw moeq::Error, one line naming the layer and why.
AwqNormFold awq_attn_norm_fold(const Model& model, int64_t layer);
AwqVoFold awq_vo_fold(const Model& model, int64_t layer);

// The scales of v_proj's rows ([kv_heads * head_dim]) from o_proj's input scales: each kv head's
// channel takes the value of its group (equal over the group's heads by construction).
at::Tensor awq_v_row_scales(const AwqVoFold& f, const at::Tensor& o_scales);

// The scales that divide `site`'s input in the folded model ([in] float32 CPU), undefined when none.
at::Tensor awq_input_scales(const AwqScales& a, const Site& site);
// Whether the fold changes `site`'s weight (its input is scaled, or its rows: v_proj under o's fold).
bool awq_folds(const AwqScales& a, const Site& site);

// The stored tensors the fold changes that are not quantized sites of an export: the norms, v_proj's
// bias, and the plain 2D tensors of the sites the fold changes, each folded and cast back to its source dtype (the
// bytes the export writes in place of the copy-through tensor). Throws naming the site when a
// reader is stored in a way moeq does not fold (fused, transposed or a quantized source).
std::map<std::string, at::Tensor> awq_folded_tensors(const AwqScales& a, const Checkpoint& ck, const SiteMap& sites);

}  // namespace moeq
