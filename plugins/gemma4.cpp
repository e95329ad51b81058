// Gemma4 (26B-A4B layout): every layer has a dense MLP (`mlp`) beside fused 3D experts
// (`experts.gate_up_proj [E, 2I, H]`, gate rows first), and a router with its own
// scales. The multimodal checkpoint (Gemma4ForConditionalGeneration) nests the language
// model under `model.language_model.` and carries vision/audio towers, which are
// claimed as role tower (never quantized by moeq, never dropped; the vision encoder's
// linears are `*.linear.weight` inside Gemma4ClippableLinear modules).
#include "model/fusion.h"
#include "model/plugin.h"
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
}  // namespace
MOEQ_PLUGIN("Gemma4", gemma4_rules, "gemma4", "gemma4_text");
// vLLM fuses q/k/v into qkv_proj and gate/up into gate_up_proj (dense, shared and routed experts: w13).
MOEQ_FUSION_GROUPS("Gemma4", {{"q", "k", "v"}, {"gate", "up"}});
}  // namespace moeq::plugins
