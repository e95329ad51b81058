// Qwen3.5-MoE / Qwen3-Next: hybrid layers, most with linear attention (gated delta net:
// in_proj_qkv, in_proj_z, in_proj_a/b, conv1d, out_proj), some with full attention
// (gated q_proj of twice the width); routed experts plus one shared expert with a
// sigmoid gate. The multimodal checkpoint nests the text model under
// `model.language_model.` and carries a vision tower (role tower); the MTP head is a
// top-level `mtp.*` tree (role mtp).
#include "core/error.h"
#include "model/architecture.h"
#include "model/config_keys.h"
#include "plugins/common.h"

namespace moeq::plugins {
namespace {
void decoder_layer(Rules& r, const std::string& L) {
  llama_attention(r, L);
  r.push_back(linear(L + "linear_attn.{P:in_proj_qkv|in_proj_z|in_proj_a|in_proj_b|in_proj_qkvz|in_proj_ba|out_proj}.weight",
                     Role::Attention, "layers.{L}.linear_attn.{P}", "{P}"));
  r.push_back(aux(L + "linear_attn.{P:conv1d}.weight", Role::Attention, "linear attention conv1d"));
  r.push_back(aux(L + "linear_attn.{P:A_log|dt_bias}", Role::Attention, "linear attention decay"));
  r.push_back(aux(L + "linear_attn.norm.weight", Role::Norm, "linear attention norm"));
  layer_norms(r, L, {"input_layernorm", "post_attention_layernorm"});
  experts(r, L, "mlp.experts");
  gated_mlp(r, L, "mlp.shared_expert", Role::SharedExpert, "layers.{L}.shared_experts");
  r.push_back(linear(L + "mlp.shared_expert_gate.weight", Role::Router, "layers.{L}.shared_expert_gate", "router"));
  r.push_back(linear(L + "mlp.gate.weight", Role::Router, "layers.{L}.router", "router"));
}

void text_model(Rules& r, const std::string& prefix) {
  embeddings_and_head(r, prefix);
  decoder_layer(r, prefix + "layers.{L}.");
}

// The MTP head as Qwen3-Next-80B-A3B and Qwen3.5-35B-A3B publish it (their
// model.safetensors.index.json; transformers 5.17 drops it on load,
// `_keys_to_ignore_on_load_unexpected = [r"^mtp.*"]` in modeling_qwen3_next.py and
// modeling_qwen3_5_moe.py): mtp.fc [H, 2H], mtp.pre_fc_norm_embedding / _hidden, mtp.norm,
// and mtp.layers.{L} decoder layers with full attention and per-expert
// `mlp.experts.{E}.*_proj` (per expert even where the trunk's experts are fused).
void mtp_tree(Rules& r, const ModelConfig& cfg) {
  Rules m;
  decoder_layer(m, "mtp.layers.{L}.");
  m.push_back(linear("mtp.fc.weight", Role::Mtp, "mtp.fc", "fc"));
  m.push_back(aux("mtp.{P:pre_fc_norm_embedding|pre_fc_norm_hidden|norm}.weight", Role::Mtp, "MTP norm"));
  as_mtp(r, std::move(m), cfg.num_layers);
  // Anything else under mtp.* is copied and listed as an mtp tensor.
  r.push_back(aux("mtp.**", Role::Mtp, "MTP tensor (copied)"));
}

Rules qwen3_5_moe_rules(const ModelConfig& cfg) {
  Rules r;
  text_model(r, "model.");
  text_model(r, "model.language_model.");
  mtp_tree(r, cfg);
  // Qwen3.5's vision encoder (`model.visual.blocks.*`, `model.visual.merger.*`; dropped by
  // Qwen3_5MoeForCausalLM: `_keys_to_ignore_on_load_unexpected = [r"^mtp.*", r"^model.visual.*"]`).
  r.push_back(aux("model.visual.**", Role::Tower, "vision tower (not quantized)"));
  return r;
}

// The hybrid decoder (calib/forward/hybrid_decoder.cpp): layer_types mix gated delta-net
// linear attention and gated full attention with partial RoPE (rope_parameters
// .partial_rotary_factor); softmax top-k router renormalized, one gated shared expert.
// Qwen3-Next's fused in_proj_qkvz / in_proj_ba layout has no native forward.
DecoderSpec qwen3_5_moe_decoder(const ModelConfig& c) {
  if (c.model_type == "qwen3_next" || c.text_model_type == "qwen3_next")
    throw Error("no native forward for model_type 'qwen3_next' (" + c.path +
                "); moeq's native Qwen3.5-MoE forward covers the Qwen3.5 layout (in_proj_qkv, in_proj_z, in_proj_a, "
                "in_proj_b)");
  require_default_rope(c, "Qwen3.5-MoE");
  DecoderSpec s;
  s.family = "Qwen3.5-MoE";
  s.layout = DecoderLayout::Hybrid;
  s.eps = config_double(c, "rms_norm_eps", 1e-6);
  s.ffn.act = config_string(c, "hidden_act", "silu");
  s.ffn.router.top_k = c.num_experts_per_tok;
  s.ffn.router.renormalize = true;
  s.ffn.router.round_weights_to_dtype = true;
  // (1 + w) norm, read by the router, the experts, the shared expert and its sigmoid gate.
  s.ffn.expert_input = moe_input_fold("post_attention_layernorm.weight",
                                      {"shared_experts.gate", "shared_experts.up", "shared_expert_gate"}, /*one_plus=*/true);
  LayerKind& full = s.kinds["full_attention"];
  full.attention = AttentionKind::GatedSelf;
  full.attn.heads = c.num_heads;
  full.attn.kv_heads = c.num_kv_heads;
  full.attn.head_dim = c.head_dim;
  full.rope.theta = rope_theta(c, 10000.0);
  full.rope.dim = static_cast<int64_t>(c.head_dim * partial_rotary_factor(c, 1.0));
  // (1 + w) input_layernorm; the output gate (sigmoid of q_proj's gate rows) multiplies each
  // channel, so o_proj's input still folds into v_proj's rows.
  llama_attention_folds(full, /*one_plus=*/true);
  LayerKind& lin = s.kinds["linear_attention"];
  lin.attention = AttentionKind::GatedDelta;
  lin.linear.k_heads = c.get_int("linear_num_key_heads", 0);
  lin.linear.v_heads = c.get_int("linear_num_value_heads", 0);
  lin.linear.dk = c.get_int("linear_key_head_dim", 0);
  lin.linear.dv = c.get_int("linear_value_head_dim", 0);
  // The delta net's input projections read input_layernorm alone; out_proj reads a gated
  // RMSNorm of the delta rule's output, which a per-channel scale does not pass.
  lin.attn_input.norm = "input_layernorm.weight";
  lin.attn_input.one_plus = true;
  lin.attn_input.readers = {"linear_attn.in_proj_qkv", "linear_attn.in_proj_z", "linear_attn.in_proj_a", "linear_attn.in_proj_b"};
  lin.attn_input.why_not.clear();
  lin.attn_output.why_not = "linear attention: out_proj reads the gated RMSNorm of the delta rule's output, which does not "
                            "pass a per-channel scale of v through";
  // layer_types, or Qwen3-Next's full_attention_interval (ModelConfig derives the list).
  if (c.layer_types.empty())
    throw Error("config '" + c.path + "': layer_types (linear_attention / full_attention per layer) and "
                "full_attention_interval are both missing");
  for (const std::string& type : c.layer_types)
    if (type != "linear_attention" && type != "full_attention")
      throw Error("config '" + c.path + "': layer type '" + type + "' (expected linear_attention or full_attention)");
  s.layer_types = c.layer_types;
  if (static_cast<int64_t>(s.layer_types.size()) != c.num_layers)
    throw Error("config '" + c.path + "': layer_types has " + std::to_string(s.layer_types.size()) + " entries for " +
                std::to_string(c.num_layers) + " layers");
  const LinearAttnSpec& l = lin.linear;
  const int64_t rotary_dim = full.rope.dim;
  if (rotary_dim <= 0 || rotary_dim % 2 != 0 || l.k_heads <= 0 || l.v_heads % l.k_heads != 0 || l.dk <= 0 || l.dv <= 0)
    throw Error("config '" + c.path + "': rotary dim " + std::to_string(rotary_dim) + ", linear heads " +
                std::to_string(l.k_heads) + "/" + std::to_string(l.v_heads) +
                " (need an even rotary dim, value heads a multiple of key heads, head dims > 0)");
  return s;
}
}  // namespace
// vLLM qwen3_5.py / qwen3_next.py: q/k/v -> qkv_proj, gate/up -> gate_up_proj (and w13),
// in_proj_qkv + in_proj_z -> in_proj_qkvz, in_proj_b + in_proj_a -> in_proj_ba.
MOEQ_REGISTER(Architecture, "Qwen3.5-MoE",
              Architecture{"Qwen3.5-MoE", {"qwen3_5_moe", "qwen3_5_moe_text", "qwen3_next"}, qwen3_5_moe_rules,
                           {{"q", "k", "v"}, {"gate", "up"}, {"in_proj_qkv", "in_proj_z"}, {"in_proj_b", "in_proj_a"}},
                           qwen3_5_moe_decoder})
}  // namespace moeq::plugins
