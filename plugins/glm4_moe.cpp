// GLM-4.5/4.6 MoE: Llama attention, leading dense layers (first_k_dense_replace), routed
// experts plus shared experts, router with e_score_correction_bias.
#include "core/error.h"
#include "model/architecture.h"
#include "model/config_keys.h"
#include "plugins/common.h"

namespace moeq::plugins {
namespace {
Rules glm4_moe_rules(const ModelConfig&) {
  Rules r;
  const std::string L = "model.layers.{L}.";
  embeddings_and_head(r, "model.");
  llama_attention(r, L);
  layer_norms(r, L, {"input_layernorm", "post_attention_layernorm"});
  experts(r, L, "mlp.experts");
  gated_mlp(r, L, "mlp.shared_experts", Role::SharedExpert, "layers.{L}.shared_experts");
  r.push_back(linear(L + "mlp.gate.weight", Role::Router, "layers.{L}.router", "router"));
  r.push_back(aux(L + "mlp.gate.e_score_correction_bias", Role::Router, "router score bias"));
  gated_mlp(r, L, "mlp", Role::DenseMlp, "layers.{L}.mlp");
  nextn_layer(r, L);  // the MTP layer model.layers.{num_hidden_layers}
  return r;
}
// Llama-style attention (optional per-head QK norm, optional biases) with partial rotary (the
// first head_dim * partial_rotary_factor dims), the first first_k_dense_replace layers dense,
// then DeepSeek's sigmoid-routed MoE with shared experts.
DecoderSpec glm4_moe_decoder(const ModelConfig& c) {
  DecoderSpec s = llama_decoder(c, "GLM-4-MoE");
  LayerKind& k = uniform_layers(s);
  k.attn.qk_norm = config_bool(c, "use_qk_norm", false) ? QkNorm::PerHead : QkNorm::None;
  k.attn.window = 0;
  // transformers' Glm4MoeConfig default partial_rotary_factor: 0.5
  const int64_t rotary_dim = static_cast<int64_t>(c.head_dim * partial_rotary_factor(c, 0.5));
  if (rotary_dim <= 0 || rotary_dim % 2 != 0 || rotary_dim > c.head_dim)
    throw Error("config '" + c.path + "': partial_rotary_factor gives rotary dim " + std::to_string(rotary_dim) +
                " for head_dim " + std::to_string(c.head_dim) + " (need an even dim in 2.." + std::to_string(c.head_dim) + ")");
  k.attn.rotary_dim = rotary_dim;
  k.rope.dim = rotary_dim;
  s.ffn.router = sigmoid_group_router(c);
  s.ffn.expert_input = moe_input_fold("post_attention_layernorm.weight", {"shared_experts.gate", "shared_experts.up"});
  return s;
}
}  // namespace
// vLLM fuses q/k/v into qkv_proj and gate/up into gate_up_proj (dense, shared and routed experts: w13).
MOEQ_REGISTER(Architecture, "GLM-4-MoE",
              Architecture{"GLM-4-MoE", {"glm4_moe"}, glm4_moe_rules, {{"q", "k", "v"}, {"gate", "up"}}, glm4_moe_decoder})
}  // namespace moeq::plugins
