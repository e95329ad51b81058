// OLMoE: Qwen-like naming, q_norm/k_norm over the whole projection.
#include "model/fusion.h"
#include "model/plugin.h"
#include "plugins/common.h"

namespace moeq::plugins {
namespace {
Rules olmoe_rules(const ModelConfig&) {
  Rules r;
  const std::string L = "model.layers.{L}.";
  embeddings_and_head(r, "model.");
  llama_attention(r, L);
  layer_norms(r, L, {"input_layernorm", "post_attention_layernorm"});
  experts(r, L, "mlp.experts");
  r.push_back(linear(L + "mlp.gate.weight", Role::Router, "layers.{L}.router", "router"));
  return r;
}
}  // namespace
MOEQ_PLUGIN("OLMoE", olmoe_rules, "olmoe");
// vLLM fuses q/k/v into qkv_proj and gate/up into gate_up_proj (dense, shared and routed experts: w13).
MOEQ_FUSION_GROUPS("OLMoE", {{"q", "k", "v"}, {"gate", "up"}});
}  // namespace moeq::plugins
