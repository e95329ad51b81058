// gpt-oss: Llama-style pre-norm decoder (RMSNorm weight applied in float32) with
// - attention: biased q/k/v/o, per-head softmax sinks, sliding-window layers by layer_types,
//   RoPE from rope_parameters (YaRN in the published configs: cos/sin scaled by its mscale);
// - router: a biased linear, top-k of the logits, softmax over those k logits;
// - experts: biased gate/up/down (the loader de-interleaves gate and up, so do the biases
//   here) and the clamped SwiGLU (up + 1) * g * sigmoid(alpha * g), g = min(gate, limit),
//   up clamped to [-limit, limit].
#include <cmath>

#include "calib/forward/attention.h"
#include "calib/forward/decoder.h"
#include "calib/forward/rope_scaling.h"
#include "core/error.h"

namespace moeq::fwd {
namespace {
constexpr RmsStyle kStyle = RmsStyle::ScaleThenCast;
constexpr double kAlpha = 1.702;  // fixed in gpt-oss (not a config key)

class GptOss : public DecoderFamily {
 public:
  explicit GptOss(const ModelConfig& c) {
    eps_ = config_double(c, "rms_norm_eps", 1e-5);
    top_k_ = c.num_experts_per_tok;
    limit_ = config_double(c, "swiglu_limit", 7.0);
    freqs_ = rope_freqs(c, c.head_dim, "gpt-oss");
    const int64_t window = static_cast<int64_t>(config_double(c, "sliding_window", 0));
    if (!c.text.contains("layer_types") || !c.text["layer_types"].is_array())
      throw Error("config '" + c.path + "': layer_types (sliding_attention / full_attention per layer) is missing");
    for (const auto& t : c.text["layer_types"]) {
      const std::string type = t.get<std::string>();
      if (type != "sliding_attention" && type != "full_attention")
        throw Error("config '" + c.path + "': layer type '" + type + "' (expected sliding_attention or full_attention)");
      AttnSpec a;
      a.heads = c.num_heads;
      a.kv_heads = c.num_kv_heads;
      a.head_dim = c.head_dim;
      a.scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
      a.window = type == "sliding_attention" ? window : 0;
      a.sinks = true;
      attn_.push_back(a);
    }
    if (static_cast<int64_t>(attn_.size()) != c.num_layers)
      throw Error("config '" + c.path + "': layer_types has " + std::to_string(attn_.size()) + " entries for " +
                  std::to_string(c.num_layers) + " layers");
  }

  void prepare(int64_t seq, const ForwardOptions& o) override {
    rope_ = make_rope(freqs_.inv_freq, seq, o.device, o.dtype, freqs_.attention_factor);
  }

  at::Tensor layer(const LayerRun& r, const at::Tensor& h_in) const override {
    at::Tensor a = self_attention(r, rms_norm(h_in, r.w.a("input_layernorm.weight"), eps_, kStyle), attn_.at(r.layer()), rope_);
    at::Tensor h = h_in + a;
    return h + experts(r, rms_norm(h, r.w.a("post_attention_layernorm.weight"), eps_, kStyle));
  }

  at::Tensor head(const LayerRun& r, const at::Tensor& h) const override { return standard_head(r, h, eps_, kStyle); }

 private:
  at::Tensor experts(const LayerRun& r, const at::Tensor& x) const {
    at::Tensor flat = x.reshape({-1, x.size(-1)});
    r.observe({"router"}, flat);
    at::Tensor logits = r.linear("router", flat, "mlp.router.bias");
    auto [top, ids] = logits.topk(top_k_, -1);
    Routing routing{ids, at::softmax(top, -1).to(at::kFloat)};
    ExpertMath m;
    const double limit = limit_;
    m.glu = [limit](const at::Tensor& gate, const at::Tensor& up) {
      at::Tensor g = gate.clamp_max(limit);
      return (up.clamp(-limit, limit) + 1) * (g * at::sigmoid(g * kAlpha));
    };
    at::Tensor b = r.w.a("mlp.experts.gate_up_proj_bias");  // [E, 2I], gate and up interleaved
    m.gate_up_bias = at::cat({b.slice(1, 0, b.size(1), 2), b.slice(1, 1, b.size(1), 2)}, 1);
    m.down_bias = r.w.a("mlp.experts.down_proj_bias");
    return routed_experts(r, flat, routing, m).view(x.sizes());
  }

  double eps_ = 1e-5, limit_ = 7.0;
  int64_t top_k_ = 0;
  RopeFreqs freqs_;
  std::vector<AttnSpec> attn_;
  Rope rope_;
};

std::unique_ptr<DecoderFamily> make_gpt_oss(const ModelConfig& c) { return std::make_unique<GptOss>(c); }
}  // namespace
MOEQ_FORWARD("gpt-oss", make_gpt_oss, "gpt_oss");
}  // namespace moeq::fwd
