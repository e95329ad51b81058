#pragma once
// Self-attention of the Llama family and its variants (GQA, QK-norm per head or over the
// whole projection, qkv clipping, Gemma4's value norm and k-as-v), on the sites attn.q/k/v/o.
#include <ATen/ATen.h>

#include "calib/forward/blocks.h"
#include "model/decoder_spec.h"

namespace moeq::fwd {

// AttnSpec, QkNorm: model/decoder_spec.h (a plugin sets them in its DecoderSpec).

// x [B, S, H] -> attention output after o_proj [B, S, H]. The observer sees q/k/v's shared
// input and o's input.
at::Tensor self_attention(const LayerRun& r, const at::Tensor& x, const AttnSpec& s, const Rope& rope);

}  // namespace moeq::fwd
