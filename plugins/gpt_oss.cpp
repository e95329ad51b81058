// gpt-oss: experts stored FUSED and TRANSPOSED on disk. gate_up_proj is [E, H, 2I] with
// gate and up interleaved along the last dim (gate = [..., 0::2], up = [..., 1::2]);
// down_proj is [E, I, H]. Each becomes a strided [out, in] view, no copy. Biases for
// experts, router and attention, and attention sinks are claimed as aux tensors.
// Checkpoints published in MXFP4 (openai/gpt-oss-20b/120b) store the experts as
// `gate_up_proj_blocks` U8 [E, 2I, H/32, 16] (rows in [out, in] order, gate/up interleaved on
// the rows) and `down_proj_blocks` [E, H, I/32, 16] with E8M0 `*_scales`; their sites are
// views of the decoded stacks (model/source_quant.h).
#include <cmath>

#include "core/error.h"
#include "model/architecture.h"
#include "model/config_keys.h"
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

// Pre-norm decoder (RMSNorm weight applied in float32) with
// - attention: biased q/k/v/o, per-head softmax sinks, sliding-window layers by layer_types,
//   RoPE from rope_parameters (YaRN in the published configs: cos/sin scaled by its mscale);
// - the biased router and clamped-SwiGLU experts (calib/forward/clamped_swiglu.h).
DecoderSpec gpt_oss_decoder(const ModelConfig& c) {
  DecoderSpec s;
  s.family = "gpt-oss";
  s.norm = RmsStyle::ScaleThenCast;
  s.eps = config_double(c, "rms_norm_eps", 1e-5);
  s.ffn.router.kind = RouterKind::TopkThenSoftmax;
  s.ffn.router.top_k = c.num_experts_per_tok;
  s.ffn.swiglu_limit = config_double(c, "swiglu_limit", 7.0);
  // The clamp acts on gate/up's outputs: their inputs' scales fold (router and expert biases
  // are added after the matmul). down_proj's do not (calib/calibrators/awq_job.cpp refuses).
  s.ffn.expert_input = moe_input_fold("post_attention_layernorm.weight");
  const int64_t window = static_cast<int64_t>(config_double(c, "sliding_window", 0));
  if (!c.text.contains("layer_types") || !c.text["layer_types"].is_array())
    throw Error("config '" + c.path + "': layer_types (sliding_attention / full_attention per layer) is missing");
  for (const auto& t : c.text["layer_types"]) {
    const std::string type = t.get<std::string>();
    if (type != "sliding_attention" && type != "full_attention")
      throw Error("config '" + c.path + "': layer type '" + type + "' (expected sliding_attention or full_attention)");
    s.layer_types.push_back(type);
  }
  if (static_cast<int64_t>(s.layer_types.size()) != c.num_layers)
    throw Error("config '" + c.path + "': layer_types has " + std::to_string(s.layer_types.size()) + " entries for " +
                std::to_string(c.num_layers) + " layers");
  for (const std::string type : {"sliding_attention", "full_attention"}) {
    LayerKind& k = s.kinds[type];
    k.attn.heads = c.num_heads;
    k.attn.kv_heads = c.num_kv_heads;
    k.attn.head_dim = c.head_dim;
    k.attn.scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
    k.attn.window = type == "sliding_attention" ? window : 0;
    k.attn.sinks = true;  // a per-head logit in the softmax: the output stays linear in v
    llama_attention_folds(k);
    k.rope.kind = RopeSpec::Kind::FromConfig;
    k.rope.dim = c.head_dim;
  }
  return s;
}
}  // namespace
// vLLM fuses q/k/v into qkv_proj and gate/up into gate_up_proj (dense, shared and routed experts: w13).
MOEQ_REGISTER(Architecture, "gpt-oss",
              Architecture{"gpt-oss", {"gpt_oss"}, gpt_oss_rules, {{"q", "k", "v"}, {"gate", "up"}}, gpt_oss_decoder})
}  // namespace moeq::plugins
