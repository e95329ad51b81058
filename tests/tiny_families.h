#pragma once
// The tiny checkpoint of every registered architecture (model/architecture.h): its directory
// under TINY_DIR is the architecture's first model_type (tests/python/tiny_models.py writes
// one per architecture under that name). Tests iterate these instead of typing family names,
// so a new architecture is tested by every per-family test once it is registered.
#include <algorithm>
#include <string>
#include <vector>

#include "model/architecture.h"

namespace moeq::test {

// Sorted; with_forward: only the architectures with a native forward (a DecoderSpec).
inline std::vector<std::string> tiny_families(bool with_forward = false) {
  std::vector<std::string> out;
  for (const auto& e : Architectures::instance().entries())
    if (!with_forward || e.item.decoder) out.push_back(e.item.model_types.at(0));
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace moeq::test
