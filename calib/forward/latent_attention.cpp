// DeepSeek-V3 (and Kimi-K2): multi-head latent attention and the sigmoid-routed MoE.
//   MLA: q = q_b(norm(q_a(x))) (or q_proj without q_lora_rank), split per head into a nope
//   part and a rope part; kv_a(x) gives a latent (normed, then kv_b expands it per head into
//   k_nope and v) and one rope key shared by all heads. RoPE (default or YaRN, interleaved
//   pairs when rope_interleave) rotates only the rope parts; the attention scale is
//   qk_head_dim^-0.5 times YaRN's mscale(factor, mscale_all_dim)^2.
//   FFN: the first first_k_dense_replace layers dense (`mlp.*`), then routed + shared experts
//   (calib/forward/sigmoid_moe.h).
#include <cmath>

#include "calib/forward/decoder.h"
#include "calib/forward/rope_scaling.h"
#include "calib/forward/sigmoid_moe.h"
#include "core/error.h"

namespace moeq::fwd {
namespace {

class DeepseekV3 : public DecoderFamily {
 public:
  explicit DeepseekV3(const ModelConfig& c) {
    heads_ = c.num_heads;
    q_lora_ = static_cast<int64_t>(config_double(c, "q_lora_rank", 0));
    kv_lora_ = static_cast<int64_t>(config_double(c, "kv_lora_rank", 0));
    nope_ = static_cast<int64_t>(config_double(c, "qk_nope_head_dim", 0));
    rope_dim_ = static_cast<int64_t>(config_double(c, "qk_rope_head_dim", 0));
    v_dim_ = static_cast<int64_t>(config_double(c, "v_head_dim", 0));
    if (kv_lora_ <= 0 || rope_dim_ <= 0 || v_dim_ <= 0 || nope_ < 0)
      throw Error("config '" + c.path + "': kv_lora_rank, qk_rope_head_dim, v_head_dim must be > 0 for DeepSeek-V3 MLA");
    eps_ = config_double(c, "rms_norm_eps", 1e-6);
    act_ = config_string(c, "hidden_act", "silu");
    interleave_ = config_bool(c, "rope_interleave", true);
    freqs_ = rope_freqs(c, rope_dim_, "DeepSeek-V3");
    scale_ = std::pow(static_cast<double>(nope_ + rope_dim_), -0.5) * freqs_.softmax_scale_factor;
    router_ = sigmoid_router_spec(c);
  }

  void prepare(int64_t seq, const ForwardOptions& o) override {
    rope_ = make_rope(freqs_.inv_freq, seq, o.device, o.dtype, freqs_.attention_factor);
  }

  at::Tensor layer(const LayerRun& r, const at::Tensor& h_in) const override {
    at::Tensor h = h_in + attention(r, rms_norm(h_in, r.w.a("input_layernorm.weight"), eps_));
    return h + sigmoid_moe(r, rms_norm(h, r.w.a("post_attention_layernorm.weight"), eps_), router_, activation(act_));
  }

  at::Tensor head(const LayerRun& r, const at::Tensor& h) const override {
    return standard_head(r, h, eps_, RmsStyle::CastThenScale);
  }

 private:
  at::Tensor rotate(const at::Tensor& x) const { return interleave_ ? apply_rope_interleaved(x, rope_) : apply_rope(x, rope_); }

  at::Tensor attention(const LayerRun& r, const at::Tensor& x) const {
    const int64_t B = x.size(0), S = x.size(1);
    r.observe({"attn.q", "attn.q_a", "attn.kv_a"}, x);
    at::Tensor q;
    if (q_lora_ > 0) {
      at::Tensor qa = rms_norm(r.linear("attn.q_a", x, "self_attn.q_a_proj.bias"), r.w.a("self_attn.q_a_layernorm.weight"), eps_);
      r.observe({"attn.q_b"}, qa);
      q = r.linear("attn.q_b", qa);
    } else {
      q = r.linear("attn.q", x);
    }
    q = q.view({B, S, heads_, nope_ + rope_dim_});
    at::Tensor ckv = r.linear("attn.kv_a", x, "self_attn.kv_a_proj_with_mqa.bias");
    at::Tensor latent = rms_norm(ckv.narrow(-1, 0, kv_lora_), r.w.a("self_attn.kv_a_layernorm.weight"), eps_);
    at::Tensor k_rot = rotate(ckv.narrow(-1, kv_lora_, rope_dim_).view({B, S, 1, rope_dim_}));
    r.observe({"attn.kv_b"}, latent);
    at::Tensor kv = r.linear("attn.kv_b", latent).view({B, S, heads_, nope_ + v_dim_});
    at::Tensor qh = at::cat({q.narrow(-1, 0, nope_), rotate(q.narrow(-1, nope_, rope_dim_))}, -1).transpose(1, 2);
    at::Tensor kh = at::cat({kv.narrow(-1, 0, nope_), k_rot.expand({B, S, heads_, rope_dim_})}, -1).transpose(1, 2);
    at::Tensor vh = kv.narrow(-1, nope_, v_dim_).transpose(1, 2);
    at::Tensor o = fwd::attention(qh, kh, vh, scale_).transpose(1, 2).reshape({B, S, heads_ * v_dim_});
    r.observe({"attn.o"}, o);
    return r.linear("attn.o", o, "self_attn.o_proj.bias");
  }

  int64_t heads_ = 0, q_lora_ = 0, kv_lora_ = 0, nope_ = 0, rope_dim_ = 0, v_dim_ = 0;
  double eps_ = 1e-6, scale_ = 1.0;
  std::string act_;
  bool interleave_ = true;
  RopeFreqs freqs_;
  SigmoidRouterSpec router_;
  Rope rope_;
};

std::unique_ptr<DecoderFamily> make_deepseek_v3(const ModelConfig& c) { return std::make_unique<DeepseekV3>(c); }
}  // namespace
MOEQ_FORWARD("DeepSeek-V3", make_deepseek_v3, "deepseek_v3", "kimi_k2");
}  // namespace moeq::fwd
