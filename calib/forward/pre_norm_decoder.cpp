#include "calib/forward/pre_norm_decoder.h"

#include <cmath>

#include "calib/forward/stage_timer.h"

namespace moeq::fwd {

void LlamaMoeFamily::prepare(int64_t seq, const ForwardOptions& options) {
  rope_ = make_rope(default_inv_freq(spec_.rope_theta, spec_.attn.head_dim), seq, options.device, options.dtype);
}

at::Tensor LlamaMoeFamily::feed_forward(const LayerRun& r, const at::Tensor& x) const {
  if (!r.w.has("router")) return gated_mlp(r, "mlp", x, activation(spec_.act));
  at::Tensor flat = x.reshape({-1, x.size(-1)});
  r.observe({"router"}, flat);
  Routing routing;
  {
    StageScope t("router, top-k", x.device());
    routing = softmax_topk(r.linear("router", flat), spec_.top_k, spec_.renormalize);
    if (spec_.round_weights_to_dtype) routing.weights = routing.weights.to(x.scalar_type());
  }
  at::Tensor y = routed_experts(r, flat, routing, activation(spec_.act));
  if (!spec_.shared_prefix.empty()) y = y + gated_mlp(r, spec_.shared_prefix, flat, activation(spec_.act));
  return y.view(x.sizes());
}

at::Tensor LlamaMoeFamily::layer(const LayerRun& r, const at::Tensor& h_in) const {
  at::Tensor h;
  {
    StageScope t("attention", h_in.device());
    h = h_in + self_attention(r, rms_norm(h_in, r.w.a("input_layernorm.weight"), spec_.eps), spec_.attn, rope_);
  }
  return h + feed_forward(r, rms_norm(h, r.w.a("post_attention_layernorm.weight"), spec_.eps));
}

at::Tensor LlamaMoeFamily::head(const LayerRun& r, const at::Tensor& h) const {
  return standard_head(r, h, spec_.eps, RmsStyle::CastThenScale);
}

LlamaMoeSpec llama_moe_spec(const ModelConfig& c, const std::string& family) {
  require_default_rope(c, family);
  LlamaMoeSpec s;
  s.family = family;
  s.attn.heads = c.num_heads;
  s.attn.kv_heads = c.num_kv_heads;
  s.attn.head_dim = c.head_dim;
  s.attn.scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  s.attn.window = static_cast<int64_t>(config_double(c, "sliding_window", 0));
  s.eps = config_double(c, "rms_norm_eps", 1e-6);
  s.attn.eps = s.eps;
  s.rope_theta = rope_theta(c, 10000.0);
  s.act = config_string(c, "hidden_act", "silu");
  s.top_k = c.num_experts_per_tok;
  return s;
}

}  // namespace moeq::fwd
