#include "calib/calibrators/awq_quant.h"

#include "core/error.h"

namespace moeq {

int64_t awq_format_block(const QuantFormat& fmt, const SitePlan& first, const at::Tensor& W) {
  const int64_t in = W.size(-1);
  const QuantizedTensor probe = fmt.quantize(W.narrow(0, 0, 1), first.params);
  const auto bs = probe.parts.find("weight_scale");
  if (bs == probe.parts.end() || bs->second.dim() < 1 || in % bs->second.size(-1) != 0)
    throw Error(first.site->name + ": calibrator awq needs a block-scaled format (weight_scale per block of inputs), " + first.format +
                " is not");
  return in / bs->second.size(-1);
}

AwqFakeQuant awq_fake_quant(const QuantFormat& fmt, const FormatParams& params) {
  const bool tensor_scale = fmt.has_tensor_scale(params);
  return [&fmt, params, tensor_scale](const at::Tensor& w) {
    const QuantizedTensor q = tensor_scale ? fmt.quantize(w, params, w.abs().amax({1, 2})) : fmt.quantize(w, params);
    return fmt.dequantize(q, at::kFloat);
  };
}

}  // namespace moeq
