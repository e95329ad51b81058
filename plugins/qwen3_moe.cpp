// Qwen3-MoE (and Qwen2-MoE-style naming without shared experts): experts under
// `mlp.experts`, router `mlp.gate`; per-expert 2D on disk, fused 3D in memory.
#include "model/architecture.h"
#include "model/config_keys.h"
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
// Per-head QK RMSNorm, softmax top-k router (renormalized when norm_topk_prob, weights
// rounded to the compute dtype), dense MLP on mlp_only_layers (mapped to `mlp.*` above).
DecoderSpec qwen3_moe_decoder(const ModelConfig& c) {
  DecoderSpec s = llama_decoder(c, "Qwen3-MoE");
  AttnSpec& a = uniform_layers(s).attn;
  a.qk_norm = QkNorm::PerHead;
  if (!config_bool(c, "use_sliding_window", false)) a.window = 0;
  s.ffn.router.renormalize = config_bool(c, "norm_topk_prob", false);
  s.ffn.router.round_weights_to_dtype = true;
  return s;
}
}  // namespace
// vLLM fuses q/k/v into qkv_proj and gate/up into gate_up_proj (dense, shared and routed experts: w13).
MOEQ_REGISTER(Architecture, "Qwen3-MoE",
              Architecture{"Qwen3-MoE", {"qwen3_moe"}, qwen3_moe_rules, {{"q", "k", "v"}, {"gate", "up"}}, qwen3_moe_decoder})
}  // namespace moeq::plugins
