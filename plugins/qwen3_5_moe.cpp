// Qwen3.5-MoE / Qwen3-Next: hybrid layers, most with linear attention (gated delta net:
// in_proj_qkv, in_proj_z, in_proj_a/b, conv1d, out_proj), some with full attention
// (gated q_proj of twice the width); routed experts plus one shared expert with a
// sigmoid gate. The multimodal checkpoint nests the text model under
// `model.language_model.` and carries a vision tower (role tower); the MTP head is a
// top-level `mtp.*` tree (role mtp).
#include "model/fusion.h"
#include "model/plugin.h"
#include "plugins/common.h"

namespace moeq::plugins {
namespace {
void decoder_layer(Rules& r, const std::string& L) {
  llama_attention(r, L);
  r.push_back(linear(L + "linear_attn.{P:in_proj_qkv|in_proj_z|in_proj_a|in_proj_b|in_proj_qkvz|in_proj_ba|out_proj}.weight",
                     Role::Attention, "layers.{L}.linear_attn.{P}", "{P}"));
  r.push_back(aux(L + "linear_attn.{P:conv1d}.weight", Role::Attention, "linear attention conv1d"));
  r.push_back(aux(L + "linear_attn.{P:A_log|dt_bias}", Role::Attention, "linear attention decay"));
  r.push_back(aux(L + "linear_attn.norm.weight", Role::Norm, "linear attention norm"));
  layer_norms(r, L, {"input_layernorm", "post_attention_layernorm"});
  experts(r, L, "mlp.experts");
  gated_mlp(r, L, "mlp.shared_expert", Role::SharedExpert, "layers.{L}.shared_experts");
  r.push_back(linear(L + "mlp.shared_expert_gate.weight", Role::Router, "layers.{L}.shared_expert_gate", "router"));
  r.push_back(linear(L + "mlp.gate.weight", Role::Router, "layers.{L}.router", "router"));
}

void text_model(Rules& r, const std::string& prefix) {
  embeddings_and_head(r, prefix);
  decoder_layer(r, prefix + "layers.{L}.");
}

// The MTP head as Qwen3-Next-80B-A3B and Qwen3.5-35B-A3B publish it (their
// model.safetensors.index.json; transformers 5.17 drops it on load,
// `_keys_to_ignore_on_load_unexpected = [r"^mtp.*"]` in modeling_qwen3_next.py and
// modeling_qwen3_5_moe.py): mtp.fc [H, 2H], mtp.pre_fc_norm_embedding / _hidden, mtp.norm,
// and mtp.layers.{L} decoder layers with full attention and per-expert
// `mlp.experts.{E}.*_proj` (per expert even where the trunk's experts are fused).
void mtp_tree(Rules& r, const ModelConfig& cfg) {
  Rules m;
  decoder_layer(m, "mtp.layers.{L}.");
  m.push_back(linear("mtp.fc.weight", Role::Mtp, "mtp.fc", "fc"));
  m.push_back(aux("mtp.{P:pre_fc_norm_embedding|pre_fc_norm_hidden|norm}.weight", Role::Mtp, "MTP norm"));
  as_mtp(r, std::move(m), cfg.num_layers);
  // Anything else under mtp.* is copied and listed as an mtp tensor.
  r.push_back(aux("mtp.**", Role::Mtp, "MTP tensor (copied)"));
}

Rules qwen3_5_moe_rules(const ModelConfig& cfg) {
  Rules r;
  text_model(r, "model.");
  text_model(r, "model.language_model.");
  mtp_tree(r, cfg);
  // Qwen3.5's vision encoder (`model.visual.blocks.*`, `model.visual.merger.*`; dropped by
  // Qwen3_5MoeForCausalLM: `_keys_to_ignore_on_load_unexpected = [r"^mtp.*", r"^model.visual.*"]`).
  r.push_back(aux("model.visual.**", Role::Tower, "vision tower (not quantized)"));
  return r;
}
}  // namespace
MOEQ_PLUGIN("Qwen3.5-MoE", qwen3_5_moe_rules, "qwen3_5_moe", "qwen3_5_moe_text", "qwen3_next");
// vLLM qwen3_5.py / qwen3_next.py: q/k/v -> qkv_proj, gate/up -> gate_up_proj (and w13),
// in_proj_qkv + in_proj_z -> in_proj_qkvz, in_proj_b + in_proj_a -> in_proj_ba.
MOEQ_FUSION_GROUPS("Qwen3.5-MoE", {{"q", "k", "v"}, {"gate", "up"}, {"in_proj_qkv", "in_proj_z"}, {"in_proj_b", "in_proj_a"}});
}  // namespace moeq::plugins
