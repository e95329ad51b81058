#include "calib/forward/attention.h"

#include "calib/forward/attention_sinks.h"
#include "calib/forward/rope_scaling.h"

namespace moeq::fwd {

at::Tensor self_attention(const LayerRun& r, const at::Tensor& x, const AttnSpec& s, const Rope& rope) {
  const int64_t B = x.size(0), S = x.size(1), D = s.head_dim;
  r.observe({"attn.q", "attn.k", "attn.v"}, x);
  at::Tensor q = r.linear("attn.q", x, "self_attn.q_proj.bias");
  at::Tensor k = r.linear("attn.k", x, "self_attn.k_proj.bias");
  at::Tensor v = s.k_eq_v ? k : r.linear("attn.v", x, "self_attn.v_proj.bias");
  if (s.qk_norm == QkNorm::Full) {
    q = rms_norm(q, r.w.a("self_attn.q_norm.weight"), s.eps, s.style);
    k = rms_norm(k, r.w.a("self_attn.k_norm.weight"), s.eps, s.style);
  }
  if (s.clip_qkv > 0) {
    q = q.clamp(-s.clip_qkv, s.clip_qkv);
    k = k.clamp(-s.clip_qkv, s.clip_qkv);
    v = v.clamp(-s.clip_qkv, s.clip_qkv);
  }
  q = q.view({B, S, -1, D});
  k = k.view({B, S, -1, D});
  v = v.view({B, S, -1, D});
  if (s.qk_norm == QkNorm::PerHead) {
    q = rms_norm(q, r.w.a("self_attn.q_norm.weight"), s.eps, s.style);
    k = rms_norm(k, r.w.a("self_attn.k_norm.weight"), s.eps, s.style);
  }
  if (s.v_norm) v = rms_norm(v, at::Tensor(), s.eps, s.style);
  q = (s.rotary_dim > 0 ? apply_rope_partial(q, rope) : apply_rope(q, rope)).transpose(1, 2);
  k = (s.rotary_dim > 0 ? apply_rope_partial(k, rope) : apply_rope(k, rope)).transpose(1, 2);
  v = v.transpose(1, 2);
  at::Tensor o = s.sinks ? attention_with_sinks(q, k, v, s.scale, s.window, r.w.a("self_attn.sinks"))
                         : attention(q, k, v, s.scale, s.window);
  o = o.transpose(1, 2).reshape({B, S, -1});
  r.observe({"attn.o"}, o);
  return r.linear("attn.o", o, "self_attn.o_proj.bias");
}

}  // namespace moeq::fwd
