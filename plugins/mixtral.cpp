// Mixtral: on disk `block_sparse_moe.experts.E.{w1,w3,w2}` (gate, up, down) and
// `block_sparse_moe.gate`; transformers 5 holds them fused under `mlp.experts` in memory.
#include "model/fusion.h"
#include "model/plugin.h"
#include "plugins/common.h"

namespace moeq::plugins {
namespace {
Rules mixtral_rules(const ModelConfig&) {
  Rules r;
  const std::string L = "model.layers.{L}.";
  embeddings_and_head(r, "model.");
  llama_attention(r, L);
  layer_norms(r, L, {"input_layernorm", "post_attention_layernorm"});
  for (const char* module : {"block_sparse_moe", "mlp"}) {
    experts(r, L, std::string(module) + ".experts", "w1", "w3", "w2");
    experts(r, L, std::string(module) + ".experts");
    r.push_back(linear(L + module + ".gate.weight", Role::Router, "layers.{L}.router", "router"));
  }
  return r;
}
}  // namespace
MOEQ_PLUGIN("Mixtral", mixtral_rules, "mixtral");
// vLLM fuses q/k/v into qkv_proj and gate/up into gate_up_proj (dense, shared and routed experts: w13).
MOEQ_FUSION_GROUPS("Mixtral", {{"q", "k", "v"}, {"gate", "up"}});
}  // namespace moeq::plugins
