#pragma once
// Causal attention with per-head "sinks" (gpt-oss): each head's softmax gets one extra logit
// sinks[h] that takes probability mass but has no value, so the weights of a row sum to < 1.
#include <ATen/ATen.h>

namespace moeq::fwd {

// q [B, Hq, S, D], k/v [B, Hkv, S, D] (grouped-query when Hkv < Hq), sinks [Hq]. Causal;
// `window` > 0 also limits each query to the last `window` keys (itself included). Softmax in
// float32, in blocks of queries (memory: B * Hq * block * S scores at a time).
at::Tensor attention_with_sinks(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                                int64_t window, const at::Tensor& sinks);

}  // namespace moeq::fwd
