#pragma once
// The fuzzed operation: parse an arbitrary byte string as a safetensors file. A moeq::Error
// is the correct outcome for bad input; any other exception, crash or sanitizer report is a bug.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/safetensors.h"

namespace moeq::fuzz {

inline int parse_one(const uint8_t* data, size_t size) {
  try {
    auto h = parse_safetensors_header(data, size, size, "<fuzz>");
    // Touch every tensor's bytes: offsets were validated, so this must stay in bounds.
    unsigned acc = 0;
    for (const auto& t : h.tensors)
      for (uint64_t i = t.begin; i < t.end; ++i) acc += data[h.data_start + i];
    return static_cast<int>(acc & 1);
  } catch (const moeq::Error&) {
    return -1;
  }
}

}  // namespace moeq::fuzz
