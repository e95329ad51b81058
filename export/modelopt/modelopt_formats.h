#pragma once
// The two weight layouts a ModelOpt checkpoint holds, recognised from a format's traits (not
// its name), shared by the ModelOpt writer and `moeq verify`: NVFP4 is E2M1 codes under FP8
// E4M3 block scales and a per-tensor global scale (weight_scale_2); FP8 is E4M3 elements with
// one scale per tensor (or channel) and no blocks.
#include <string>

#include "formats/format.h"

namespace moeq {

inline bool modelopt_nvfp4_layout(const FormatTraits& t) {
  return t.kind == ElementKind::Float && t.bits == 4 && t.block_scale == BlockScale::E4M3 && t.global_scale;
}
inline bool modelopt_fp8_layout(const FormatTraits& t) {
  return t.kind == ElementKind::Float && t.bits == 8 && t.block == 0;
}
inline bool modelopt_nvfp4_layout(const std::string& format) {
  const QuantFormat* f = find_format(format);
  return f && modelopt_nvfp4_layout(f->traits());
}
inline bool modelopt_fp8_layout(const std::string& format) {
  const QuantFormat* f = find_format(format);
  return f && modelopt_fp8_layout(f->traits());
}

}  // namespace moeq
