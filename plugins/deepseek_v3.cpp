// DeepSeek-V3 (and Kimi-K2-style checkpoints): multi-head latent attention (q_a/q_b,
// kv_a_proj_with_mqa/kv_b), the first `first_k_dense_replace` layers dense, then routed
// experts plus shared experts, router with an e_score_correction_bias.
#include "model/fusion.h"
#include "model/plugin.h"
#include "plugins/common.h"

namespace moeq::plugins {
namespace {
Rules deepseek_v3_rules(const ModelConfig&) {
  Rules r;
  const std::string L = "model.layers.{L}.";
  embeddings_and_head(r, "model.");
  r.push_back(linear(L + "self_attn.{P:q_proj|q_a_proj|q_b_proj|kv_a_proj_with_mqa|kv_b_proj|o_proj}.weight",
                     Role::Attention, "layers.{L}.attn.{P}", "{P}",
                     {{"q_proj", "q"}, {"q_a_proj", "q_a"}, {"q_b_proj", "q_b"}, {"kv_a_proj_with_mqa", "kv_a"},
                      {"kv_b_proj", "kv_b"}, {"o_proj", "o"}}));
  r.push_back(aux(L + "self_attn.{P:q_a_layernorm|kv_a_layernorm}.weight", Role::Norm, "MLA norm"));
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
MOEQ_PLUGIN("DeepSeek-V3", deepseek_v3_rules, "deepseek_v3", "kimi_k2");
// vLLM deepseek_v2.py DeepseekV2ForCausalLM.load_weights: q_a_proj + kv_a_proj_with_mqa load into
// fused_qkv_a_proj (with q_lora_rank), gate/up into gate_up_proj and the experts' w13.
MOEQ_FUSION_GROUPS("DeepSeek-V3", {{"q_a", "kv_a"}, {"gate", "up"}});
}  // namespace moeq::plugins
