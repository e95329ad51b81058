// Qwen3-MoE (and Qwen2-MoE-style naming without shared experts): experts under
// `mlp.experts`, router `mlp.gate`; per-expert 2D on disk, fused 3D in memory.
#include "model/fusion.h"
#include "model/plugin.h"
#include "plugins/common.h"

namespace moeq::plugins {
namespace {
Rules qwen3_moe_rules(const ModelConfig&) {
  Rules r;
  const std::string L = "model.layers.{L}.";
  embeddings_and_head(r, "model.");
  llama_attention(r, L);
  layer_norms(r, L, {"input_layernorm", "post_attention_layernorm"});
  experts(r, L, "mlp.experts");
  r.push_back(linear(L + "mlp.gate.weight", Role::Router, "layers.{L}.router", "router"));
  gated_mlp(r, L, "mlp", Role::DenseMlp, "layers.{L}.mlp");  // layers listed in mlp_only_layers
  return r;
}
}  // namespace
MOEQ_PLUGIN("Qwen3-MoE", qwen3_moe_rules, "qwen3_moe");
// vLLM fuses q/k/v into qkv_proj and gate/up into gate_up_proj (dense, shared and routed experts: w13).
MOEQ_FUSION_GROUPS("Qwen3-MoE", {{"q", "k", "v"}, {"gate", "up"}});
}  // namespace moeq::plugins
