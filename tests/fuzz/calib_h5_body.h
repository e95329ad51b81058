#pragma once
// The fuzzed operation: arbitrary bytes as a calib.h5 file through read_calib_file.
#include "calib/calib_file.h"
#include "fuzz/scratch.h"

namespace moeq::fuzz {

inline int calib_h5_one(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("calib.h5", data, size);
  try {
    const CalibData d = read_calib_file(path);
    size_t n = 0;
    for (const auto& s : d.sites) n += s.channel_amax.size() + s.name.size();
    for (const auto& l : d.layers) n += l.tokens_per_expert.size() + l.router_load.size() + l.router_weight.size();
    return static_cast<int>(n & 1);
  } catch (const Error& e) {
    return rejected(e);
  }
}

}  // namespace moeq::fuzz
