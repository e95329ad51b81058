// DecoderLayout::Hybrid (Qwen3.5-MoE, text): layer kinds mix gated delta-net linear attention
// and full attention; every layer has routed experts plus one shared expert scaled by
// sigmoid(shared_expert_gate).
// - RMSNorms scale by (1 + weight) in float32 (Gemma style), q/k norms per head likewise;
// - full attention (AttentionKind::GatedSelf): q_proj gives per head [q | gate]; output *
//   sigmoid(gate) before o_proj; partial RoPE (the kind's rope dim; text positions make mRoPE
//   plain RoPE);
// - linear attention (AttentionKind::GatedDelta): in_proj_qkv -> causal depthwise conv1d + SiLU
//   -> q, k, v heads (q/k repeated to the value heads), beta = sigmoid(in_proj_b), g =
//   -exp(A_log) * softplus(in_proj_a + dt_bias), gated delta rule (calib/forward/gated_delta.h),
//   then a gated RMSNorm (weight * norm(o), times silu(in_proj_z)) and out_proj;
// - router: softmax top-k renormalized, weights rounded to the compute dtype.
#include <cmath>

#include "calib/forward/decoder.h"
#include "calib/forward/gated_delta.h"
#include "calib/forward/rope_scaling.h"
#include "core/error.h"

namespace moeq::fwd {
namespace {

class HybridDecoder : public DecoderFamily {
 public:
  HybridDecoder(const DecoderSpec& spec, const ModelConfig& c) {
    eps_ = spec.eps;
    act_ = spec.ffn.act;
    top_k_ = spec.ffn.router.top_k;
    for (const auto& [name, kind] : spec.kinds) {
      if (kind.attention == AttentionKind::GatedSelf) {
        heads_ = kind.attn.heads;
        kv_heads_ = kind.attn.kv_heads;
        head_dim_ = kind.attn.head_dim;
        inv_freq_ = rope_freqs(kind.rope, c, spec.family).inv_freq;
      } else {
        k_heads_ = kind.linear.k_heads;
        v_heads_ = kind.linear.v_heads;
        dk_ = kind.linear.dk;
        dv_ = kind.linear.dv;
      }
    }
    for (const std::string& type : spec.layer_types)
      linear_.push_back(spec.kinds.at(type).attention == AttentionKind::GatedDelta);
  }

  void prepare(int64_t seq, const ForwardOptions& o) override {
    rope_ = make_rope(inv_freq_, seq, o.device, o.dtype);
  }

  at::Tensor layer(const LayerRun& r, const at::Tensor& h_in) const override {
    at::Tensor x = norm(h_in, r.w.a("input_layernorm.weight"));
    at::Tensor h = h_in + (linear_.at(r.layer()) ? linear_attention(r, x) : full_attention(r, x));
    return h + moe(r, norm(h, r.w.a("post_attention_layernorm.weight")));
  }

  at::Tensor head(const LayerRun& r, const at::Tensor& h) const override {
    at::Tensor x = norm(h, r.w.a("norm.weight"));
    const bool own_head = r.w.has("lm_head");
    if (own_head) r.observe({"lm_head"}, x);
    if (!r.want_logits) return at::Tensor();
    return at::linear(own_head ? r.input("lm_head", x) : x, r.w.w(own_head ? "lm_head" : "embed_tokens")).to(at::kFloat);
  }

 private:
  at::Tensor norm(const at::Tensor& x, const at::Tensor& w) const {
    return rms_norm(x, w.to(at::kFloat) + 1.0, eps_, RmsStyle::ScaleThenCast);
  }

  at::Tensor full_attention(const LayerRun& r, const at::Tensor& x) const {
    const int64_t B = x.size(0), S = x.size(1), D = head_dim_;
    r.observe({"attn.q", "attn.k", "attn.v"}, x);
    at::Tensor qg = r.linear("attn.q", x, "self_attn.q_proj.bias").view({B, S, heads_, 2 * D});
    at::Tensor q = qg.narrow(-1, 0, D), gate = qg.narrow(-1, D, D).reshape({B, S, heads_ * D});
    at::Tensor k = r.linear("attn.k", x, "self_attn.k_proj.bias").view({B, S, kv_heads_, D});
    at::Tensor v = r.linear("attn.v", x, "self_attn.v_proj.bias").view({B, S, kv_heads_, D});
    q = apply_rope_partial(norm(q, r.w.a("self_attn.q_norm.weight")), rope_).transpose(1, 2);
    k = apply_rope_partial(norm(k, r.w.a("self_attn.k_norm.weight")), rope_).transpose(1, 2);
    at::Tensor o = attention(q, k, v.transpose(1, 2), 1.0 / std::sqrt(static_cast<double>(D)));
    o = o.transpose(1, 2).reshape({B, S, heads_ * D}) * at::sigmoid(gate);
    r.observe({"attn.o"}, o);
    return r.linear("attn.o", o, "self_attn.o_proj.bias");
  }

  at::Tensor linear_attention(const LayerRun& r, const at::Tensor& x) const {
    const int64_t B = x.size(0), S = x.size(1), key_dim = k_heads_ * dk_, value_dim = v_heads_ * dv_;
    if (r.w.has("linear_attn.in_proj_qkvz"))
      throw Error("native forward: layer " + std::to_string(r.layer()) +
                  " has Qwen3-Next's fused in_proj_qkvz/in_proj_ba; moeq's native forward covers the Qwen3.5 layout "
                  "(in_proj_qkv, in_proj_z, in_proj_a, in_proj_b)");
    r.observe({"linear_attn.in_proj_qkv", "linear_attn.in_proj_z", "linear_attn.in_proj_a", "linear_attn.in_proj_b"}, x);
    at::Tensor mixed = r.linear("linear_attn.in_proj_qkv", x).transpose(1, 2);  // [B, C, S]
    const at::Tensor& conv = r.w.a("linear_attn.conv1d.weight");               // [C, 1, K]
    const int64_t K = conv.size(-1);
    mixed = at::silu(at::conv1d(mixed, conv, {}, 1, K - 1, 1, conv.size(0)).narrow(-1, 0, S)).transpose(1, 2);
    at::Tensor q = mixed.narrow(-1, 0, key_dim).reshape({B, S, k_heads_, dk_});
    at::Tensor k = mixed.narrow(-1, key_dim, key_dim).reshape({B, S, k_heads_, dk_});
    at::Tensor v = mixed.narrow(-1, 2 * key_dim, value_dim).reshape({B, S, v_heads_, dv_});
    at::Tensor beta = at::sigmoid(r.linear("linear_attn.in_proj_b", x));
    at::Tensor a = r.linear("linear_attn.in_proj_a", x).to(at::kFloat);
    at::Tensor g = -r.w.a("linear_attn.A_log").to(at::kFloat).exp() *
                   at::softplus(a + r.w.a("linear_attn.dt_bias").to(at::kFloat));
    if (v_heads_ > k_heads_) {
      q = q.repeat_interleave(v_heads_ / k_heads_, 2);
      k = k.repeat_interleave(v_heads_ / k_heads_, 2);
    }
    at::Tensor o = gated_delta_rule(q, k, v, g, beta);  // [B, S, Hv, dv]
    at::Tensor z = r.linear("linear_attn.in_proj_z", x).view({B, S, v_heads_, dv_});
    // gated RMSNorm: weight * norm(o) in o's dtype, times silu(z) in float32
    at::Tensor n = rms_norm(o, r.w.a("linear_attn.norm.weight"), eps_, RmsStyle::CastThenScale);
    n = (n.to(at::kFloat) * at::silu(z.to(at::kFloat))).to(o.scalar_type()).reshape({B, S, value_dim});
    r.observe({"linear_attn.out_proj"}, n);
    return r.linear("linear_attn.out_proj", n);
  }

  at::Tensor moe(const LayerRun& r, const at::Tensor& x) const {
    at::Tensor flat = x.reshape({-1, x.size(-1)});
    const Activation act = activation(act_);
    r.observe({"router"}, flat);
    Routing routing = softmax_topk(r.linear("router", flat), top_k_, /*renormalize=*/true);
    routing.weights = routing.weights.to(x.scalar_type());
    at::Tensor y = routed_experts(r, flat, routing, act);
    at::Tensor shared = gated_mlp(r, "shared_experts", flat, act);
    r.observe({"shared_expert_gate"}, flat);
    y = y + at::sigmoid(r.linear("shared_expert_gate", flat)) * shared;
    return y.view(x.sizes());
  }

  double eps_ = 1e-6;
  std::string act_;
  int64_t top_k_ = 0, heads_ = 0, kv_heads_ = 0, head_dim_ = 0;
  at::Tensor inv_freq_;
  int64_t k_heads_ = 0, v_heads_ = 0, dk_ = 0, dv_ = 0;
  std::vector<bool> linear_;
  Rope rope_;
};

}  // namespace

std::unique_ptr<DecoderFamily> make_hybrid_decoder(const DecoderSpec& spec, const ModelConfig& config) {
  return std::make_unique<HybridDecoder>(spec, config);
}

}  // namespace moeq::fwd
