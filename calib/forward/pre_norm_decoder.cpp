#include "calib/forward/pre_norm_decoder.h"

#include <cmath>

#include "calib/forward/clamped_swiglu.h"
#include "calib/forward/latent_attention.h"
#include "calib/forward/rope_scaling.h"
#include "calib/forward/sigmoid_moe.h"
#include "calib/forward/stage_timer.h"

namespace moeq::fwd {

PreNormDecoder::PreNormDecoder(DecoderSpec spec, const ModelConfig& config) : spec_(std::move(spec)) {
  for (const auto& [name, lk] : spec_.kinds) {
    Kind k;
    k.spec = lk;
    const RopeFreqs f = rope_freqs(lk.rope, config, spec_.family);
    k.inv_freq = f.inv_freq;
    k.rope_scaling = f.attention_factor;
    const LatentAttnSpec& l = lk.latent;
    k.latent_scale = std::pow(static_cast<double>(l.nope + l.rope_dim), -0.5) * f.softmax_scale_factor;
    kinds_[name] = k;
  }
}

void PreNormDecoder::prepare(int64_t seq, const ForwardOptions& options) {
  for (auto& [name, k] : kinds_) k.rope = make_rope(k.inv_freq, seq, options.device, options.dtype, k.rope_scaling);
}

at::Tensor PreNormDecoder::attention(const LayerRun& r, const Kind& k, const at::Tensor& x) const {
  if (k.spec.attention == AttentionKind::Latent) return latent_attention(r, x, k.spec.latent, k.rope, k.latent_scale);
  return self_attention(r, x, k.spec.attn, k.rope);
}

at::Tensor PreNormDecoder::softmax_moe(const LayerRun& r, const at::Tensor& x) const {
  const FeedForwardSpec& f = spec_.ffn;
  at::Tensor flat = x.reshape({-1, x.size(-1)});
  r.observe({"router"}, flat);
  Routing routing;
  {
    StageScope t("router, top-k", x.device());
    routing = softmax_topk(r.linear("router", flat), f.router.top_k, f.router.renormalize);
    if (f.router.round_weights_to_dtype) routing.weights = routing.weights.to(x.scalar_type());
  }
  at::Tensor y = routed_experts(r, flat, routing, activation(f.act));
  if (!f.shared_prefix.empty()) y = y + gated_mlp(r, f.shared_prefix, flat, activation(f.act));
  return y.view(x.sizes());
}

at::Tensor PreNormDecoder::feed_forward(const LayerRun& r, const at::Tensor& x) const {
  const FeedForwardSpec& f = spec_.ffn;
  switch (f.router.kind) {
    case RouterKind::SigmoidGroupTopk: return sigmoid_moe(r, x, f.router, activation(f.act));
    case RouterKind::TopkThenSoftmax: return clamped_swiglu_moe(r, x, f.router.top_k, f.swiglu_limit);
    case RouterKind::SoftmaxTopk: break;
  }
  if (!r.w.has("router")) return gated_mlp(r, "mlp", x, activation(f.act));
  return softmax_moe(r, x);
}

at::Tensor PreNormDecoder::layer(const LayerRun& r, const at::Tensor& h_in) const {
  const Kind& k = kinds_.at(spec_.layer_types.empty() ? std::string(DecoderSpec::kUniformLayers)
                                                      : spec_.layer_types.at(r.layer()));
  at::Tensor h;
  {
    StageScope t("attention", h_in.device());
    h = h_in + attention(r, k, rms_norm(h_in, r.w.a("input_layernorm.weight"), spec_.eps, spec_.norm));
  }
  return h + feed_forward(r, rms_norm(h, r.w.a("post_attention_layernorm.weight"), spec_.eps, spec_.norm));
}

at::Tensor PreNormDecoder::head(const LayerRun& r, const at::Tensor& h) const {
  return standard_head(r, h, spec_.eps, spec_.norm, spec_.logit_softcap);
}

std::unique_ptr<DecoderFamily> make_pre_norm_decoder(const DecoderSpec& spec, const ModelConfig& config) {
  return std::make_unique<PreNormDecoder>(spec, config);
}

}  // namespace moeq::fwd
