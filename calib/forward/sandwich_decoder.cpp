// DecoderLayout::Sandwich (Gemma4, text part; 26B-A4B layout). Differences from the pre-norm
// decoder:
// - embeddings scaled by sqrt(hidden) (cast to the compute dtype first), Gemma-style RMSNorm
//   (weight applied in float32), and a soft-capped head when spec.logit_softcap is set;
// - layer kinds (sliding / full attention) each with their own AttnSpec and RoPE table;
// - every layer has a dense MLP *and* routed experts, each with its own pre/post norms:
//     h += post_attention_norm(attn(input_norm(h)))
//     m  = post_ff_norm_1(mlp(pre_ff_norm(h))) + post_ff_norm_2(experts(pre_ff_norm_2(h)))
//     h  = (h + post_ff_norm(m)) * layer_scalar
//   The router sees a scale-free norm of h times router.scale / sqrt(hidden); its top-k
//   weights are renormalized and multiplied by router.per_expert_scale.
#include <cmath>

#include "calib/forward/attention.h"
#include "calib/forward/decoder.h"
#include "calib/forward/rope_scaling.h"

namespace moeq::fwd {
namespace {
constexpr RmsStyle kStyle = RmsStyle::ScaleThenCast;

struct LayerType {
  AttnSpec attn;
  at::Tensor inv_freq;
  Rope rope;
};

class SandwichDecoder : public DecoderFamily {
 public:
  SandwichDecoder(const DecoderSpec& spec, const ModelConfig& c) : spec_(spec) {
    for (const auto& [name, kind] : spec_.kinds) {
      LayerType lt;
      lt.attn = kind.attn;
      lt.inv_freq = rope_freqs(kind.rope, c, spec_.family).inv_freq;
      types_[name] = lt;
    }
  }

  void prepare(int64_t seq, const ForwardOptions& o) override {
    for (auto& [name, lt] : types_) lt.rope = make_rope(lt.inv_freq, seq, o.device, o.dtype);
  }

  at::Tensor embed(const LayerWeights& g, const at::Tensor& ids) const override {
    const at::Tensor& w = g.w("embed_tokens");
    at::Tensor scale = at::scalar_tensor(std::sqrt(static_cast<double>(w.size(1))), at::kFloat).to(w.scalar_type());
    return at::embedding(w, ids) * scale.to(w.device());
  }

  at::Tensor layer(const LayerRun& r, const at::Tensor& h_in) const override {
    const LayerType& lt = types_.at(spec_.layer_types.at(r.layer()));
    const double eps = spec_.eps;
    auto norm = [&](const at::Tensor& x, const std::string& n) { return rms_norm(x, r.w.a(n + ".weight"), eps, kStyle); };
    const Activation act = activation(spec_.ffn.act);
    at::Tensor a = self_attention(r, norm(h_in, "input_layernorm"), lt.attn, lt.rope);
    at::Tensor h = h_in + norm(a, "post_attention_layernorm");
    at::Tensor m = gated_mlp(r, "mlp", norm(h, "pre_feedforward_layernorm"), act);
    if (r.w.has("router")) {
      const int64_t H = h.size(-1);
      at::Tensor flat = h.reshape({-1, H});
      at::Tensor rx = rms_norm(flat, at::Tensor(), eps, kStyle) * r.w.a("router.scale") * std::pow(H, -0.5);
      r.observe({"router"}, rx);
      Routing routing = softmax_topk(r.linear("router", rx), spec_.ffn.router.top_k, /*renormalize=*/true);
      routing.weights = routing.weights * r.w.a("router.per_expert_scale").index_select(0, routing.ids.reshape(-1)).view_as(routing.ids);
      at::Tensor e = routed_experts(r, norm(flat, "pre_feedforward_layernorm_2"), routing, act);
      m = norm(m, "post_feedforward_layernorm_1") + norm(e.view(h.sizes()), "post_feedforward_layernorm_2");
    }
    h = h + norm(m, "post_feedforward_layernorm");
    at::Tensor scalar = r.w.a_opt("layer_scalar");
    return scalar.defined() ? h * scalar : h;
  }

  at::Tensor head(const LayerRun& r, const at::Tensor& h) const override {
    return standard_head(r, h, spec_.eps, kStyle, spec_.logit_softcap);
  }

 private:
  DecoderSpec spec_;
  std::map<std::string, LayerType> types_;
};
}  // namespace

std::unique_ptr<DecoderFamily> make_sandwich_decoder(const DecoderSpec& spec, const ModelConfig& config) {
  return std::make_unique<SandwichDecoder>(spec, config);
}

}  // namespace moeq::fwd
