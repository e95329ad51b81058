#include "formats/part_specs.h"

#include "formats/nvfp4/nvfp4.h"

namespace moeq {

std::optional<std::map<std::string, PartSpec>> part_specs(const std::string& format, const std::vector<int64_t>& shape,
                                                          const FormatParams& p) {
  const bool stack = shape.size() == 3;
  if (format == "nvfp4") {  // weight U8 [.., out, in/2]; weight_scale F8_E4M3 [.., out, in/16]; weight_scale_2 F32 [] / [E]
    format_by_name(format).validate(shape, p);
    std::vector<int64_t> packed = shape, scales = shape;
    packed.back() /= 2;
    scales.back() /= kNvfp4Block;
    return std::map<std::string, PartSpec>{{"weight", {at::kByte, packed}},
                                           {"weight_scale", {at::kFloat8_e4m3fn, scales}},
                                           {"weight_scale_2", {at::kFloat, stack ? std::vector<int64_t>{shape[0]} : std::vector<int64_t>{}}}};
  }
  if (format == "fp8") {  // weight F8_E4M3 as the input; weight_scale F32 [] / [E] per tensor, [.., out, 1] per channel
    format_by_name(format).validate(shape, p);
    std::vector<int64_t> scale;
    if (p.granularity == "channel") {
      scale = shape;
      scale.back() = 1;
    } else if (stack) {
      scale = {shape[0]};
    }
    return std::map<std::string, PartSpec>{{"weight", {at::kFloat8_e4m3fn, shape}}, {"weight_scale", {at::kFloat, scale}}};
  }
  return std::nullopt;
}

}  // namespace moeq
