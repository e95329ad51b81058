#pragma once
// The scale that replaces a zero group scale (an all-zero group) in the INT formats: the
// epsilon of the weight dtype, as compressed-tensors uses torch.finfo(dtype).eps.
#include <ATen/ATen.h>

#include <limits>

namespace moeq {

inline float intq_dtype_eps(at::ScalarType t) {
  return t == at::kBFloat16 ? 0.0078125f : t == at::kHalf ? 0.0009765625f : std::numeric_limits<float>::epsilon();
}

}  // namespace moeq
