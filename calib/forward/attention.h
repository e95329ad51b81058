#pragma once
// Self-attention of the Llama family and its variants (GQA, QK-norm per head or over the
// whole projection, qkv clipping, Gemma4's value norm and k-as-v), on the sites attn.q/k/v/o.
#include <ATen/ATen.h>

#include "calib/forward/blocks.h"

namespace moeq::fwd {

enum class QkNorm {
  None,
  PerHead,  // RMSNorm over head_dim of each head (Qwen3, Gemma4): self_attn.{q,k}_norm.weight [D]
  Full,     // RMSNorm over the whole q / k projection output (OLMoE): [heads * D]
};

struct AttnSpec {
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  double scale = 1.0;       // multiplies q.k (head_dim^-0.5 for most; 1.0 for Gemma4)
  int64_t window = 0;       // sliding window (0: full causal)
  QkNorm qk_norm = QkNorm::None;
  double eps = 1e-6;
  RmsStyle style = RmsStyle::CastThenScale;
  double clip_qkv = 0;      // OLMoE: clamp q, k, v to [-clip, clip] after the norms (0: off)
  bool v_norm = false;      // Gemma4: scale-free RMSNorm of v per head
  bool k_eq_v = false;      // Gemma4 attention_k_eq_v: no v_proj, v is k's projection
  int64_t rotary_dim = 0;   // rotate only the first rotary_dim dims of each head (0: all; GLM-4 MoE)
  bool sinks = false;       // gpt-oss: per-head softmax sinks `self_attn.sinks` [heads]
};

// x [B, S, H] -> attention output after o_proj [B, S, H]. The observer sees q/k/v's shared
// input and o's input.
at::Tensor self_attention(const LayerRun& r, const at::Tensor& x, const AttnSpec& s, const Rope& rope);

}  // namespace moeq::fwd
