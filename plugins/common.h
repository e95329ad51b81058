#pragma once
// Rule builders and decoder specs shared by the families that follow the Llama/Qwen naming.
// Each plugin file composes these with its own; nothing here is registered by itself.
#include <string>
#include <vector>

#include "model/config.h"
#include "model/decoder_spec.h"
#include "model/rules.h"

namespace moeq::plugins {

using Rules = std::vector<Rule>;

// `{prefix}embed_tokens.weight`, `{prefix}norm.weight`, `lm_head.weight`.
void embeddings_and_head(Rules& r, const std::string& prefix);
// q/k/v/o projections (+ biases, q_norm/k_norm) under `{layers}self_attn.`.
void llama_attention(Rules& r, const std::string& layers);
// Per-layer norms by name (aux tensors).
void layer_norms(Rules& r, const std::string& layers, const std::vector<std::string>& names);
// A gate/up/down MLP under `{layers}{module}.` as sites `{site}.{gate,up,down}`.
void gated_mlp(Rules& r, const std::string& layers, const std::string& module, Role role, const std::string& site);
// Routed experts under `{layers}{module}.`: per expert `{E}.{gate,up,down}_proj.weight`
// (or the names in `per_expert`), and the fused 3D `gate_up_proj` / `down_proj`.
void experts(Rules& r, const std::string& layers, const std::string& module,
             const std::string& gate = "gate_proj", const std::string& up = "up_proj",
             const std::string& down = "down_proj");

// The extra tensors of a DeepSeek-V3 / GLM-4.5 next-n (MTP) layer under `{layers}`
// (`model.layers.{num_hidden_layers}.`): eh_proj [H, 2H], enorm / hnorm, shared_head.head
// [V, H] and shared_head.norm, and sometimes its own embed_tokens copy (claimed as an aux
// tensor: a gather table, not a linear). Its attention and MoE use the trunk's rules;
// map_sites turns every tensor of such a layer into role mtp.
void nextn_layer(Rules& r, const std::string& layers);
// Appends `inner` as a top-level MTP tree (Qwen3-Next / Qwen3.5 `mtp.layers.{L}.*`): role
// mtp, site names prefixed `mtp.`, layers counted after the trunk's `trunk_layers`.
void as_mtp(Rules& r, Rules inner, int64_t trunk_layers);

// The decoder most families share: pre-norm, the same self-attention on every layer (heads,
// kv heads, head_dim, scale head_dim^-0.5, sliding_window, rms_norm_eps) with the default
// RoPE (rope theta over head_dim; any other rope type throws), hidden_act, and a softmax top-k
// router of num_experts_per_tok. The family sets the rest.
DecoderSpec llama_decoder(const ModelConfig& c, const std::string& family);
// AWQ's fold of the routed experts' gate/up input (model/decoder_spec.h NormFold): the norm
// `norm` (relative to the layer) feeds the experts, the router and `extra` readers only.
NormFold moe_input_fold(const std::string& norm, const std::vector<std::string>& extra = {}, bool one_plus = false);
// AWQ's folds of a Llama-style attention (llama_attention's sites; model/decoder_spec.h
// NormFold, VoFold): input_layernorm feeds attn.q/k/v only, v_proj's rows (and bias) take o_proj's
// scales. Whether the attention spec keeps the v -> o fold exact (v_norm, clip_qkv) is calib's check.
void llama_attention_folds(LayerKind& k, bool one_plus = false);
// The layer kind of a decoder whose layers all attend alike (llama_decoder's).
LayerKind& uniform_layers(DecoderSpec& s);
// DeepSeek-V3 / GLM-4's sigmoid router: n_group, topk_group, norm_topk_prob (default true),
// routed_scaling_factor; throws naming the config unless 1 <= topk_group <= n_group.
RouterSpec sigmoid_group_router(const ModelConfig& c);

}  // namespace moeq::plugins
