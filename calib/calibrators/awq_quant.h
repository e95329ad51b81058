#pragma once
// The quantizer an AWQ search scores with: the site's format's own max path (the bytes the
// export writes), and the block of inputs it scales together.
#include <ATen/ATen.h>

#include "calib/calibrators/awq.h"
#include "formats/format.h"
#include "recipe/recipe.h"

namespace moeq {

// The block of inputs `fmt` scales together (NVFP4 16, INT4 the group size), from one probe of
// W [E, out, in]. Throws naming `first`'s site when the format has no per-block weight scale.
int64_t awq_format_block(const QuantFormat& fmt, const SitePlan& first, const at::Tensor& W);
// Q(W) for W [E, out, in]: quantized with `params` (a tensor-scaled format: one global scale per
// E from the amax of W), dequantized to float32.
AwqFakeQuant awq_fake_quant(const QuantFormat& fmt, const FormatParams& params);

}  // namespace moeq
