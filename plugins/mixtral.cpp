// Mixtral: on disk `block_sparse_moe.experts.E.{w1,w3,w2}` (gate, up, down) and
// `block_sparse_moe.gate`; transformers 5 holds them fused under `mlp.experts` in memory.
#include "model/architecture.h"
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
// No QK norm, sliding window from the config (when set), softmax top-k router whose k
// weights are always renormalized (kept in float32).
DecoderSpec mixtral_decoder(const ModelConfig& c) {
  DecoderSpec s = llama_decoder(c, "Mixtral");
  s.ffn.router.renormalize = true;
  return s;
}
}  // namespace
// vLLM fuses q/k/v into qkv_proj and gate/up into gate_up_proj (dense, shared and routed experts: w13).
MOEQ_REGISTER(Architecture, "Mixtral",
              Architecture{"Mixtral", {"mixtral"}, mixtral_rules, {{"q", "k", "v"}, {"gate", "up"}}, mixtral_decoder})
}  // namespace moeq::plugins
