#pragma once
// The pre-norm decoder most MoE families share (DecoderLayout::PreNorm):
//   h += attn(input_layernorm(h));  h += ffn(post_attention_layernorm(h))
// Attention per layer kind: self-attention (attention.h) or latent (latent_attention.h).
// Feed-forward by router kind: softmax top-k with routed and optional shared experts (sites
// `<shared_prefix>.gate/up/down`), the sigmoid group router (sigmoid_moe.h) or gpt-oss's
// clamped SwiGLU (clamped_swiglu.h); a layer without a router runs its dense MLP (`mlp.*`).
#include <map>
#include <string>

#include "calib/forward/attention.h"
#include "calib/forward/decoder.h"

namespace moeq::fwd {

class PreNormDecoder : public DecoderFamily {
 public:
  PreNormDecoder(DecoderSpec spec, const ModelConfig& config);
  void prepare(int64_t seq, const ForwardOptions& options) override;
  at::Tensor layer(const LayerRun& run, const at::Tensor& h) const override;
  at::Tensor head(const LayerRun& run, const at::Tensor& h) const override;

 private:
  struct Kind {
    LayerKind spec;
    at::Tensor inv_freq;
    double rope_scaling = 1.0;  // multiplies cos and sin (YaRN's mscale)
    double latent_scale = 1.0;  // latent attention's q.k scale
    Rope rope;
  };
  at::Tensor attention(const LayerRun& r, const Kind& k, const at::Tensor& x) const;
  at::Tensor feed_forward(const LayerRun& r, const at::Tensor& x) const;
  at::Tensor softmax_moe(const LayerRun& r, const at::Tensor& x) const;

  DecoderSpec spec_;
  std::map<std::string, Kind> kinds_;
};

}  // namespace moeq::fwd
