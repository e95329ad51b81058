#include "calib/forward/gated_delta.h"

#include <cmath>

namespace moeq::fwd {
namespace {
at::Tensor l2norm(const at::Tensor& x) { return x * at::rsqrt((x * x).sum(-1, true) + 1e-6); }
}  // namespace

at::Tensor gated_delta_rule(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in, const at::Tensor& g_in,
                            const at::Tensor& beta_in) {
  // [B, H, S, *] float32
  at::Tensor q = l2norm(q_in.to(at::kFloat)).transpose(1, 2).contiguous();
  at::Tensor k = l2norm(k_in.to(at::kFloat)).transpose(1, 2).contiguous();
  at::Tensor v = v_in.to(at::kFloat).transpose(1, 2).contiguous();
  at::Tensor decay = g_in.to(at::kFloat).exp().transpose(1, 2).contiguous();  // [B, H, S]
  at::Tensor beta = beta_in.to(at::kFloat).transpose(1, 2).contiguous();
  q = q / std::sqrt(static_cast<double>(q.size(-1)));
  const int64_t B = q.size(0), H = q.size(1), S = q.size(2), dk = q.size(3), dv = v.size(3);
  at::Tensor state = at::zeros({B, H, dk, dv}, v.options());
  at::Tensor out = at::empty({B, H, S, dv}, v.options());
  for (int64_t t = 0; t < S; ++t) {
    at::Tensor kt = k.select(2, t), vt = v.select(2, t);  // [B, H, dk], [B, H, dv]
    state.mul_(decay.select(2, t).unsqueeze(-1).unsqueeze(-1));
    at::Tensor mem = at::matmul(kt.unsqueeze(-2), state).squeeze(-2);  // S^T k: [B, H, dv]
    at::Tensor delta = (vt - mem) * beta.select(2, t).unsqueeze(-1);
    state.add_(kt.unsqueeze(-1) * delta.unsqueeze(-2));
    out.select(2, t).copy_(at::matmul(q.select(2, t).unsqueeze(-2), state).squeeze(-2));
  }
  return out.transpose(1, 2).to(v_in.scalar_type());
}

}  // namespace moeq::fwd
