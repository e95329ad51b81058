// Gemma4 (26B-A4B layout): every layer has a dense MLP (`mlp`) beside fused 3D experts
// (`experts.gate_up_proj [E, 2I, H]`, gate rows first), and a router with its own
// scales. The multimodal checkpoint (Gemma4ForConditionalGeneration) nests the language
// model under `model.language_model.` and carries vision/audio towers, which are
// claimed as role tower (never quantized by moeq, never dropped; the vision encoder's
// linears are `*.linear.weight` inside Gemma4ClippableLinear modules).
#include "core/error.h"
#include "model/architecture.h"
#include "model/config_keys.h"
#include "plugins/common.h"

namespace moeq::plugins {
namespace {
void text_model(Rules& r, const std::string& prefix) {
  const std::string L = prefix + "layers.{L}.";
  embeddings_and_head(r, prefix);
  llama_attention(r, L);
  layer_norms(r, L, {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                     "post_feedforward_layernorm", "pre_feedforward_layernorm_2", "post_feedforward_layernorm_1",
                     "post_feedforward_layernorm_2", "post_per_layer_input_norm"});
  r.push_back(aux(L + "layer_scalar", Role::Other, "layer scalar"));
  gated_mlp(r, L, "mlp", Role::DenseMlp, "layers.{L}.mlp");
  experts(r, L, "experts");
  r.push_back(linear(L + "router.proj.weight", Role::Router, "layers.{L}.router", "router"));
  r.push_back(aux(L + "router.{P:scale|per_expert_scale}", Role::Router, "router scale"));
  // Per-layer input embeddings (small Gemma4 models; absent from 26B-A4B).
  r.push_back(linear(L + "per_layer_input_gate.weight", Role::Other, "layers.{L}.per_layer_input_gate", "per_layer"));
  r.push_back(linear(L + "per_layer_projection.weight", Role::Other, "layers.{L}.per_layer_projection", "per_layer"));
  r.push_back(linear(prefix + "embed_tokens_per_layer.weight", Role::Embedding, "embed_tokens_per_layer", "embed"));
  r.push_back(linear(prefix + "per_layer_model_projection.weight", Role::Other, "per_layer_model_projection", "per_layer"));
  r.push_back(aux(prefix + "per_layer_projection_norm.weight", Role::Norm, "per-layer projection norm"));
}

Rules gemma4_rules(const ModelConfig&) {
  Rules r;
  text_model(r, "model.");
  text_model(r, "model.language_model.");
  for (const char* tower : {"model.vision_tower.**", "model.audio_tower.**", "model.embed_vision.**",
                            "model.embed_audio.**", "model.multi_modal_projector.**"})
    r.push_back(aux(tower, Role::Tower, "vision/audio tower (not quantized)"));
  return r;
}

// Full-attention layers: per_layer_config[L] (when the config has it) or global_head_dim /
// num_global_key_value_heads, as transformers' Gemma4TextConfig resolves them.
void full_layer_overrides(const ModelConfig& c, bool k_eq_v, AttnSpec& a) {
  const nlohmann::json& t = c.text;
  if (t.contains("per_layer_config") && t["per_layer_config"].is_object()) {
    for (const auto& [layer, o] : t["per_layer_config"].items()) {
      if (o.contains("head_dim")) a.head_dim = o["head_dim"].get<int64_t>();
      if (o.contains("num_key_value_heads")) a.kv_heads = o["num_key_value_heads"].get<int64_t>();
    }
    return;
  }
  a.head_dim = c.get_int("global_head_dim", 512);
  if (k_eq_v && c.has("num_global_key_value_heads")) a.kv_heads = c.get_int("num_global_key_value_heads", a.kv_heads);
}

// rope_parameters.<type>: default, or "proportional" (partial RoPE over the full head_dim).
RopeSpec layer_rope(const ModelConfig& c, const std::string& type, int64_t head_dim) {
  const nlohmann::json& rp = c.text.contains("rope_parameters") ? c.text["rope_parameters"] : nlohmann::json();
  if (!rp.is_object() || !rp.contains(type) || !rp[type].is_object())
    throw Error("config '" + c.path + "': rope_parameters." + type + " is missing");
  const auto& p = rp[type];
  const std::string kind = p.value("rope_type", std::string("default"));
  RopeSpec r;
  r.theta = p.value("rope_theta", 10000.0);
  r.dim = head_dim;
  if (kind == "default") return r;
  if (kind != "proportional")
    throw Error("config '" + c.path + "': rope_parameters." + type + ".rope_type '" + kind +
                "' is not supported by the native Gemma4 forward (default, proportional)");
  r.kind = RopeSpec::Kind::Proportional;
  r.partial = p.value("partial_rotary_factor", 1.0);
  r.factor = p.value("factor", 1.0);
  return r;
}

// The sandwich decoder (calib/forward/sandwich_decoder.cpp): sliding layers (window, head_dim,
// default RoPE) and full layers (global head_dim, "proportional" partial RoPE, optional
// k-as-v attention), attention scale 1.0 with per-head q/k norms and a scale-free v norm,
// Gemma-style norms, a dense MLP beside the routed experts, an optionally soft-capped head.
DecoderSpec gemma4_decoder(const ModelConfig& c) {
  for (const char* unsupported : {"num_kv_shared_layers", "hidden_size_per_layer_input"})
    if (c.get_int(unsupported, 0) != 0)
      throw Error("config '" + c.path + "': " + unsupported +
                  " != 0 (small Gemma4 models with shared KV / per-layer inputs); moeq's native Gemma4 forward "
                  "covers the MoE layout (26B-A4B), where both are 0");
  if (config_string(c, "use_bidirectional_attention", "") == "all")
    throw Error("config '" + c.path + "': use_bidirectional_attention = 'all' is not supported by the native forward");
  DecoderSpec s;
  s.family = "Gemma4";
  s.layout = DecoderLayout::Sandwich;
  s.norm = RmsStyle::ScaleThenCast;
  s.eps = config_double(c, "rms_norm_eps", 1e-6);
  s.ffn.act = config_string(c, "hidden_activation", "gelu_pytorch_tanh");
  s.logit_softcap = config_double(c, "final_logit_softcapping", 0);
  s.ffn.router.top_k = c.num_experts_per_tok;
  s.ffn.router.renormalize = true;
  // The experts alone read pre_feedforward_layernorm_2 (the router reads a scale-free norm of h
  // and the dense MLP pre_feedforward_layernorm): no other reader to compensate.
  s.ffn.expert_input.norm = "pre_feedforward_layernorm_2.weight";
  s.ffn.expert_input.readers = {"experts.gate", "experts.up"};
  s.ffn.expert_input.why_not.clear();
  if (!c.text.contains("layer_types") || !c.text["layer_types"].is_array())
    throw Error("config '" + c.path + "': layer_types (sliding_attention / full_attention per layer) is missing");
  for (const auto& t : c.text["layer_types"]) s.layer_types.push_back(t.get<std::string>());
  if (static_cast<int64_t>(s.layer_types.size()) != c.num_layers)
    throw Error("config '" + c.path + "': layer_types has " + std::to_string(s.layer_types.size()) + " entries for " +
                std::to_string(c.num_layers) + " layers");
  const bool k_eq_v = config_bool(c, "attention_k_eq_v", false);
  for (const std::string name : {"sliding_attention", "full_attention"}) {
    AttnSpec& a = s.kinds[name].attn;
    const bool sliding = name == "sliding_attention";
    a.heads = c.num_heads;
    a.kv_heads = c.num_kv_heads;
    a.head_dim = c.head_dim;
    if (!sliding) full_layer_overrides(c, k_eq_v, a);
    a.scale = 1.0;
    a.window = sliding ? c.get_int("sliding_window", 0) : 0;
    a.qk_norm = QkNorm::PerHead;
    a.v_norm = true;
    a.k_eq_v = k_eq_v && !sliding;
    a.eps = s.eps;
    a.style = s.norm;
    s.kinds[name].rope = layer_rope(c, name, a.head_dim);
    // input_layernorm feeds q/k/v; v_norm (and k_eq_v) leave o_proj without an exact fold.
    llama_attention_folds(s.kinds[name]);
  }
  return s;
}
}  // namespace
// vLLM fuses q/k/v into qkv_proj and gate/up into gate_up_proj (dense, shared and routed experts: w13).
MOEQ_REGISTER(Architecture, "Gemma4",
              Architecture{"Gemma4", {"gemma4", "gemma4_text"}, gemma4_rules, {{"q", "k", "v"}, {"gate", "up"}}, gemma4_decoder})
}  // namespace moeq::plugins
