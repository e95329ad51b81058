// OLMoE: Qwen-like naming, q_norm/k_norm over the whole projection.
#include "model/architecture.h"
#include "model/config_keys.h"
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
// QK RMSNorm over the whole q / k projection, optional qkv clipping, softmax top-k router
// (renormalized when norm_topk_prob, weights rounded to the compute dtype).
DecoderSpec olmoe_decoder(const ModelConfig& c) {
  DecoderSpec s = llama_decoder(c, "OLMoE");
  AttnSpec& a = uniform_layers(s).attn;
  a.qk_norm = QkNorm::Full;
  a.clip_qkv = config_double(c, "clip_qkv", 0);
  s.ffn.router.renormalize = config_bool(c, "norm_topk_prob", false);
  s.ffn.router.round_weights_to_dtype = true;
  return s;
}
}  // namespace
// vLLM fuses q/k/v into qkv_proj and gate/up into gate_up_proj (dense, shared and routed experts: w13).
MOEQ_REGISTER(Architecture, "OLMoE",
              Architecture{"OLMoE", {"olmoe"}, olmoe_rules, {{"q", "k", "v"}, {"gate", "up"}}, olmoe_decoder})
}  // namespace moeq::plugins
