#pragma once
// The fuzzed operation: arbitrary bytes as a .npy ids file through read_npy_ids.
#include "calib/data_readers.h"
#include "fuzz/scratch.h"

namespace moeq::fuzz {

inline int npy_one(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("ids.npy", data, size);
  try {
    return static_cast<int>(calib_data::read_npy_ids(path).size() & 1);
  } catch (const Error& e) {
    return rejected(e);
  }
}

}  // namespace moeq::fuzz
