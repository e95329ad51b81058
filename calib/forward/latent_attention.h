#pragma once
// Multi-head latent attention (DeepSeek-V3, Kimi-K2):
//   q = q_b(norm(q_a(x))) (or q_proj without q_lora_rank), split per head into a nope part and
//   a rope part; kv_a(x) gives a latent (normed, then kv_b expands it per head into k_nope and
//   v) and one rope key shared by all heads. RoPE (interleaved pairs when spec.interleave)
//   rotates only the rope parts.
#include <ATen/ATen.h>

#include "calib/forward/blocks.h"
#include "model/decoder_spec.h"

namespace moeq::fwd {

// x [B, S, H] -> attention output after o_proj [B, S, H]; `scale` multiplies q.k
// (qk_head_dim^-0.5 times YaRN's mscale(factor, mscale_all_dim)^2).
at::Tensor latent_attention(const LayerRun& r, const at::Tensor& x, const LatentAttnSpec& s, const Rope& rope, double scale);

}  // namespace moeq::fwd
