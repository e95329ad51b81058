#include "plugins/common.h"

#include <cmath>

#include "core/error.h"
#include "model/config_keys.h"

namespace moeq::plugins {

void embeddings_and_head(Rules& r, const std::string& prefix) {
  r.push_back(linear(prefix + "embed_tokens.weight", Role::Embedding, "embed_tokens", "embed"));
  r.push_back(aux(prefix + "norm.weight", Role::Norm, "final norm"));
  r.push_back(linear("lm_head.weight", Role::LmHead, "lm_head", "lm_head"));
}

void llama_attention(Rules& r, const std::string& layers) {
  const std::string a = layers + "self_attn.";
  r.push_back(linear(a + "{P:q_proj|k_proj|v_proj|o_proj}.weight", Role::Attention, "layers.{L}.attn.{P}", "{P}",
                     {{"q_proj", "q"}, {"k_proj", "k"}, {"v_proj", "v"}, {"o_proj", "o"}}));
  r.push_back(aux(a + "{P:q_proj|k_proj|v_proj|o_proj}.bias", Role::Attention, "attention bias"));
  r.push_back(aux(a + "{P:q_norm|k_norm}.weight", Role::Norm, "q/k norm"));
}

void layer_norms(Rules& r, const std::string& layers, const std::vector<std::string>& names) {
  std::string alts;
  for (const auto& n : names) alts += (alts.empty() ? "" : "|") + n;
  r.push_back(aux(layers + "{P:" + alts + "}.weight", Role::Norm, "layer norm"));
}

void gated_mlp(Rules& r, const std::string& layers, const std::string& module, Role role, const std::string& site) {
  r.push_back(linear(layers + module + ".{P:gate_proj|up_proj|down_proj}.weight", role, site + ".{P}", "{P}",
                     {{"gate_proj", "gate"}, {"up_proj", "up"}, {"down_proj", "down"}}));
}

void experts(Rules& r, const std::string& layers, const std::string& module, const std::string& gate,
             const std::string& up, const std::string& down) {
  const std::string m = layers + module + ".";
  r.push_back(linear(m + "{E}.{P:" + gate + "|" + up + "|" + down + "}.weight", Role::Expert,
                     "layers.{L}.experts.{E}.{P}", "{P}", {{gate, "gate"}, {up, "up"}, {down, "down"}}));
  r.push_back(fused_gate_up(m + "gate_up_proj", Role::Expert, "layers.{L}.experts.{E}"));
  r.push_back(experts_3d(m + "down_proj", Role::Expert, "layers.{L}.experts.{E}.down", "down"));
}

void nextn_layer(Rules& r, const std::string& layers) {
  r.push_back(linear(layers + "eh_proj.weight", Role::Mtp, "layers.{L}.eh_proj", "eh_proj"));
  r.push_back(linear(layers + "shared_head.head.weight", Role::Mtp, "layers.{L}.shared_head", "lm_head"));
  r.push_back(aux(layers + "{P:enorm|hnorm}.weight", Role::Mtp, "MTP input norm"));
  r.push_back(aux(layers + "shared_head.norm.weight", Role::Mtp, "MTP head norm"));
  r.push_back(aux(layers + "embed_tokens.weight", Role::Mtp, "MTP embedding (gather table, copied)"));
}

void as_mtp(Rules& r, Rules inner, int64_t trunk_layers) {
  for (Rule& x : inner) {
    x.role = Role::Mtp;
    if (x.layout != Layout::Aux && x.site.rfind("mtp.", 0) != 0) x.site = "mtp." + x.site;
    x.layer_offset = trunk_layers;
    r.push_back(std::move(x));
  }
}

DecoderSpec llama_decoder(const ModelConfig& c, const std::string& family) {
  require_default_rope(c, family);
  DecoderSpec s;
  s.family = family;
  s.eps = config_double(c, "rms_norm_eps", 1e-6);
  LayerKind& k = uniform_layers(s);
  k.attn.heads = c.num_heads;
  k.attn.kv_heads = c.num_kv_heads;
  k.attn.head_dim = c.head_dim;
  k.attn.scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  k.attn.window = static_cast<int64_t>(config_double(c, "sliding_window", 0));
  k.attn.eps = s.eps;
  k.rope.theta = rope_theta(c, 10000.0);
  k.rope.dim = c.head_dim;
  s.ffn.act = config_string(c, "hidden_act", "silu");
  s.ffn.router.top_k = c.num_experts_per_tok;
  // pre-norm: post_attention_layernorm feeds the router and the routed experts only.
  s.ffn.expert_input = moe_input_fold("post_attention_layernorm.weight");
  llama_attention_folds(k);
  return s;
}

void llama_attention_folds(LayerKind& k, bool one_plus) {
  k.attn_input.norm = "input_layernorm.weight";
  k.attn_input.one_plus = one_plus;
  k.attn_input.readers = {"attn.q", "attn.k", "attn.v"};
  k.attn_input.why_not.clear();
  k.attn_output.v = "attn.v";
  k.attn_output.o = "attn.o";
  k.attn_output.v_bias = "self_attn.v_proj.bias";
  k.attn_output.why_not.clear();
}

NormFold moe_input_fold(const std::string& norm, const std::vector<std::string>& extra, bool one_plus) {
  NormFold f;
  f.norm = norm;
  f.one_plus = one_plus;
  f.readers = {"experts.gate", "experts.up", "router"};
  f.readers.insert(f.readers.end(), extra.begin(), extra.end());
  f.why_not.clear();
  return f;
}

LayerKind& uniform_layers(DecoderSpec& s) { return s.kinds[DecoderSpec::kUniformLayers]; }

RouterSpec sigmoid_group_router(const ModelConfig& c) {
  RouterSpec s;
  s.kind = RouterKind::SigmoidGroupTopk;
  s.top_k = c.num_experts_per_tok;
  s.n_group = static_cast<int64_t>(config_double(c, "n_group", 1));
  s.topk_group = static_cast<int64_t>(config_double(c, "topk_group", 1));
  s.renormalize = config_bool(c, "norm_topk_prob", true);
  s.scaling = config_double(c, "routed_scaling_factor", 1.0);
  if (s.n_group < 1 || s.topk_group < 1 || s.topk_group > s.n_group)
    throw Error("config '" + c.path + "': n_group = " + std::to_string(s.n_group) + ", topk_group = " +
                std::to_string(s.topk_group) + " (need 1 <= topk_group <= n_group)");
  return s;
}

}  // namespace moeq::plugins
