// DeepSeek-V3 (and Kimi-K2-style checkpoints): multi-head latent attention (q_a/q_b,
// kv_a_proj_with_mqa/kv_b), the first `first_k_dense_replace` layers dense, then routed
// experts plus shared experts, router with an e_score_correction_bias.
#include "core/error.h"
#include "model/architecture.h"
#include "model/config_keys.h"
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

// Multi-head latent attention (calib/forward/latent_attention.h) with RoPE from the config
// (default or YaRN, interleaved pairs when rope_interleave) over qk_rope_head_dim; the
// attention scale is qk_head_dim^-0.5 times YaRN's mscale(factor, mscale_all_dim)^2. FFN:
// the first first_k_dense_replace layers dense (`mlp.*`), then the sigmoid-routed MoE with
// shared experts.
DecoderSpec deepseek_v3_decoder(const ModelConfig& c) {
  DecoderSpec s;
  s.family = "DeepSeek-V3";
  LayerKind& k = uniform_layers(s);
  k.attention = AttentionKind::Latent;
  LatentAttnSpec& a = k.latent;
  a.heads = c.num_heads;
  a.q_lora = static_cast<int64_t>(config_double(c, "q_lora_rank", 0));
  a.kv_lora = static_cast<int64_t>(config_double(c, "kv_lora_rank", 0));
  a.nope = static_cast<int64_t>(config_double(c, "qk_nope_head_dim", 0));
  a.rope_dim = static_cast<int64_t>(config_double(c, "qk_rope_head_dim", 0));
  a.v_dim = static_cast<int64_t>(config_double(c, "v_head_dim", 0));
  if (a.kv_lora <= 0 || a.rope_dim <= 0 || a.v_dim <= 0 || a.nope < 0)
    throw Error("config '" + c.path + "': kv_lora_rank, qk_rope_head_dim, v_head_dim must be > 0 for DeepSeek-V3 MLA");
  s.eps = config_double(c, "rms_norm_eps", 1e-6);
  a.eps = s.eps;
  s.ffn.act = config_string(c, "hidden_act", "silu");
  a.interleave = config_bool(c, "rope_interleave", true);
  k.rope.kind = RopeSpec::Kind::FromConfig;
  k.rope.dim = a.rope_dim;
  s.ffn.router = sigmoid_group_router(c);
  // e_score_correction_bias is added to the router's sigmoid scores, after the matmul: unchanged.
  s.ffn.expert_input = moe_input_fold("post_attention_layernorm.weight", {"shared_experts.gate", "shared_experts.up"});
  // MLA: input_layernorm feeds q (or q_a) and kv_a only. o_proj reads heads that kv_b_proj makes
  // from the kv_a_layernorm'd latent; a fold into kv_b_proj's v rows is not built.
  k.attn_input.norm = "input_layernorm.weight";
  k.attn_input.readers = {"attn.q", "attn.q_a", "attn.kv_a"};
  k.attn_input.why_not.clear();
  k.attn_output.why_not = "MLA: o_proj's input heads come from kv_b_proj's v rows, a fold moeq does not build";
  return s;
}
}  // namespace
// vLLM deepseek_v2.py DeepseekV2ForCausalLM.load_weights: q_a_proj + kv_a_proj_with_mqa load into
// fused_qkv_a_proj (with q_lora_rank), gate/up into gate_up_proj and the experts' w13.
MOEQ_REGISTER(Architecture, "DeepSeek-V3",
              Architecture{"DeepSeek-V3", {"deepseek_v3", "kimi_k2"}, deepseek_v3_rules, {{"q_a", "kv_a"}, {"gate", "up"}},
                           deepseek_v3_decoder})
}  // namespace moeq::plugins
