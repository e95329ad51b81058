// GLM-4.5/4.6 MoE: Llama attention, leading dense layers (first_k_dense_replace), routed
// experts plus shared experts, router with e_score_correction_bias.
#include "model/fusion.h"
#include "model/plugin.h"
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
}  // namespace
MOEQ_PLUGIN("GLM-4-MoE", glm4_moe_rules, "glm4_moe");
// vLLM fuses q/k/v into qkv_proj and gate/up into gate_up_proj (dense, shared and routed experts: w13).
MOEQ_FUSION_GROUPS("GLM-4-MoE", {{"q", "k", "v"}, {"gate", "up"}});
}  // namespace moeq::plugins
