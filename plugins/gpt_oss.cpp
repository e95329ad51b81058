// gpt-oss: experts stored FUSED and TRANSPOSED on disk. gate_up_proj is [E, H, 2I] with
// gate and up interleaved along the last dim (gate = [..., 0::2], up = [..., 1::2]);
// down_proj is [E, I, H]. Each becomes a strided [out, in] view, no copy. Biases for
// experts, router and attention, and attention sinks are claimed as aux tensors.
// Checkpoints published in MXFP4 (openai/gpt-oss-20b/120b) store the experts as
// `gate_up_proj_blocks` U8 [E, 2I, H/32, 16] (rows in [out, in] order, gate/up interleaved on
// the rows) and `down_proj_blocks` [E, H, I/32, 16] with E8M0 `*_scales`; their sites are
// views of the decoded stacks (model/source_quant.h).
#include "model/fusion.h"
#include "model/plugin.h"
#include "plugins/common.h"

namespace moeq::plugins {
namespace {
Rules gpt_oss_rules(const ModelConfig&) {
  Rules r;
  const std::string L = "model.layers.{L}.";
  embeddings_and_head(r, "model.");
  llama_attention(r, L);
  r.push_back(aux(L + "self_attn.sinks", Role::Attention, "attention sinks"));
  layer_norms(r, L, {"input_layernorm", "post_attention_layernorm"});
  r.push_back(fused_gate_up_interleaved_t(L + "mlp.experts.gate_up_proj", Role::Expert, "layers.{L}.experts.{E}"));
  r.push_back(fused_down_t(L + "mlp.experts.down_proj", Role::Expert, "layers.{L}.experts.{E}"));
  r.push_back(mxfp4_gate_up_interleaved(L + "mlp.experts.gate_up_proj_blocks", Role::Expert, "layers.{L}.experts.{E}"));
  r.push_back(mxfp4_experts(L + "mlp.experts.down_proj_blocks", Role::Expert, "layers.{L}.experts.{E}.down", "down"));
  r.push_back(aux(L + "mlp.experts.{P:gate_up_proj_bias|down_proj_bias}", Role::Expert, "expert bias"));
  // Per-expert [out, in] linears, as per-linear exports (ModelOpt, compressed-tensors) write them.
  r.push_back(linear(L + "mlp.experts.{E}.{P:gate_proj|up_proj|down_proj}.weight", Role::Expert,
                     "layers.{L}.experts.{E}.{P}", "{P}", {{"gate_proj", "gate"}, {"up_proj", "up"}, {"down_proj", "down"}}));
  r.push_back(linear(L + "mlp.router.weight", Role::Router, "layers.{L}.router", "router"));
  r.push_back(aux(L + "mlp.router.bias", Role::Router, "router bias"));
  return r;
}
}  // namespace
MOEQ_PLUGIN("gpt-oss", gpt_oss_rules, "gpt_oss");
// vLLM fuses q/k/v into qkv_proj and gate/up into gate_up_proj (dense, shared and routed experts: w13).
MOEQ_FUSION_GROUPS("gpt-oss", {{"q", "k", "v"}, {"gate", "up"}});
}  // namespace moeq::plugins
