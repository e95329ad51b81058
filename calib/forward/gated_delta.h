#pragma once
// The gated delta rule of Qwen3.5 / Qwen3-Next linear-attention layers, as a recurrence over
// tokens (float32 state [B, heads, dk, dv]): per token t and head,
//   S = S * exp(g_t);  S += k_t (x) (beta_t * (v_t - S^T k_t));  o_t = S^T q_t
// with q, k L2-normalized (eps 1e-6) and q scaled by dk^-0.5. Equal in exact arithmetic to
// the chunked form transformers runs for prefill; costs S sequential steps per layer.
#include <ATen/ATen.h>

namespace moeq::fwd {

// q, k [B, S, H, dk], v [B, S, H, dv], g (log decay) and beta [B, S, H]: o [B, S, H, dv] in
// v's dtype.
at::Tensor gated_delta_rule(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
                            const at::Tensor& beta);

}  // namespace moeq::fwd
