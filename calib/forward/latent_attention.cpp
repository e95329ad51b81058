#include "calib/forward/latent_attention.h"

#include "calib/forward/rope_scaling.h"

namespace moeq::fwd {

at::Tensor latent_attention(const LayerRun& r, const at::Tensor& x, const LatentAttnSpec& s, const Rope& rope, double scale) {
  const int64_t B = x.size(0), S = x.size(1), heads = s.heads, nope = s.nope, rope_dim = s.rope_dim, v_dim = s.v_dim;
  auto rotate = [&](const at::Tensor& t) { return s.interleave ? apply_rope_interleaved(t, rope) : apply_rope(t, rope); };
  r.observe({"attn.q", "attn.q_a", "attn.kv_a"}, x);
  at::Tensor q;
  if (s.q_lora > 0) {
    at::Tensor qa = rms_norm(r.linear("attn.q_a", x, "self_attn.q_a_proj.bias"), r.w.a("self_attn.q_a_layernorm.weight"), s.eps);
    r.observe({"attn.q_b"}, qa);
    q = r.linear("attn.q_b", qa);
  } else {
    q = r.linear("attn.q", x);
  }
  q = q.view({B, S, heads, nope + rope_dim});
  at::Tensor ckv = r.linear("attn.kv_a", x, "self_attn.kv_a_proj_with_mqa.bias");
  at::Tensor latent = rms_norm(ckv.narrow(-1, 0, s.kv_lora), r.w.a("self_attn.kv_a_layernorm.weight"), s.eps);
  at::Tensor k_rot = rotate(ckv.narrow(-1, s.kv_lora, rope_dim).view({B, S, 1, rope_dim}));
  r.observe({"attn.kv_b"}, latent);
  at::Tensor kv = r.linear("attn.kv_b", latent).view({B, S, heads, nope + v_dim});
  at::Tensor qh = at::cat({q.narrow(-1, 0, nope), rotate(q.narrow(-1, nope, rope_dim))}, -1).transpose(1, 2);
  at::Tensor kh = at::cat({kv.narrow(-1, 0, nope), k_rot.expand({B, S, heads, rope_dim})}, -1).transpose(1, 2);
  at::Tensor vh = kv.narrow(-1, nope, v_dim).transpose(1, 2);
  at::Tensor o = fwd::attention(qh, kh, vh, scale).transpose(1, 2).reshape({B, S, heads * v_dim});
  r.observe({"attn.o"}, o);
  return r.linear("attn.o", o, "self_attn.o_proj.bias");
}

}  // namespace moeq::fwd
