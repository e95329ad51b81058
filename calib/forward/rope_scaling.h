#pragma once
// RoPE beyond the plain rotate-half table of blocks.h: frequencies from the config's
// rope_parameters (default or YaRN), DeepSeek's interleaved-pair rotation, and rotation of
// the first `rotary_dim` dims only (partial rotary: GLM-4 MoE).
#include <ATen/ATen.h>

#include <string>

#include "calib/forward/blocks.h"
#include "model/config.h"
#include "model/decoder_spec.h"

namespace moeq::fwd {

struct RopeFreqs {
  at::Tensor inv_freq;            // [dim / 2] float32 (CPU)
  double attention_factor = 1.0;  // multiplies cos and sin (YaRN's mscale)
  std::string type = "default";
  // YaRN with mscale_all_dim (DeepSeek): the attention scale is multiplied by this
  // (mscale(factor, mscale_all_dim)^2); 1 otherwise.
  double softmax_scale_factor = 1.0;
};

// Frequencies of a rotary dimension `dim` from rope_parameters (transformers 5.x) or
// rope_scaling: rope_type default or yarn; any other type throws naming the config.
RopeFreqs rope_freqs(const ModelConfig& c, int64_t dim, const std::string& family);

// The frequencies a layer kind's RopeSpec names: default or proportional from its own
// numbers, FromConfig through rope_freqs above (`family` names the forward in errors).
RopeFreqs rope_freqs(const RopeSpec& spec, const ModelConfig& c, const std::string& family);

// x [B, S, heads, D] with D = 2 * cos.size(-1) / 2 pairs (x0, x1), (x2, x3), ... each rotated
// by one frequency; the output lists the rotated first members, then the second members (the
// layout DeepSeek's interleaved RoPE produces).
at::Tensor apply_rope_interleaved(const at::Tensor& x, const Rope& r);

// Rotates only the first r.cos.size(-1) dims of x [B, S, heads, D] (rotate-half convention),
// passes the rest through.
at::Tensor apply_rope_partial(const at::Tensor& x, const Rope& r);

}  // namespace moeq::fwd
