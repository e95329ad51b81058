#include "formats/format.h"

#include "core/error.h"

namespace moeq {
namespace {
const Registry<FormatPtr>& registry() { return Registry<FormatPtr>::instance(); }
}  // namespace

QuantizedTensor QuantFormat::quantize_with_block_scales(const at::Tensor&, const FormatParams&, const at::Tensor&,
                                                        const at::Tensor&) const {
  throw Error(name() + ": given block scales are not supported (only nvfp4, int4 and int8 take them)");
}

std::optional<std::map<std::string, PartSpec>> QuantFormat::part_specs(const std::vector<int64_t>&,
                                                                       const FormatParams&) const {
  return std::nullopt;
}

const QuantFormat& format_by_name(const std::string& name) { return *registry().get(name, "format"); }

const QuantFormat* find_format(const std::string& name) {
  const FormatPtr* f = registry().find(name);
  return f ? f->get() : nullptr;
}

std::vector<std::string> format_names() { return registry().names(); }

void check_weight(const at::Tensor& w, const std::string& format, int64_t block) {
  if (w.dim() != 2 && w.dim() != 3)
    throw Error(format + ": expected a 2D [out, in] weight or a 3D [E, out, in] stack, got " + std::to_string(w.dim()) + "D");
  const auto t = w.scalar_type();
  if (t != at::kBFloat16 && t != at::kHalf && t != at::kFloat)
    throw Error(format + ": weights must be bf16, f16 or f32, got " + std::string(c10::toString(t)));
  if (block > 0 && w.size(-1) % block != 0)
    throw Error(format + ": input dimension " + std::to_string(w.size(-1)) + " is not divisible by block size " +
                std::to_string(block));
}

void throw_non_finite(const std::string& format) {
  throw Error(format + ": weight contains NaN or Inf; refusing to quantize it");
}

void require_finite(const at::Tensor& w, const std::string& format) {
  if (!at::isfinite(w).all().item<bool>()) throw_non_finite(format);
}

}  // namespace moeq
