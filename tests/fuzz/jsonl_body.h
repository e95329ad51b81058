#pragma once
// The fuzzed operation: arbitrary bytes as JSONL calibration data through load_calibration_tokens.
#include "calib/dataset.h"
#include "fuzz/scratch.h"

namespace moeq::fuzz {

// JSONL calibration data (text, chat messages or ids) through the tokenizer of `model_dir`.
inline int jsonl_one(const uint8_t* data, size_t size, const std::string& model_dir) {
  const std::string path = write_scratch("data.jsonl", data, size);
  try {
    const CalibTokens t = load_calibration_tokens({path, model_dir, 1, 4});
    return static_cast<int>(t.ids.numel() & 1);
  } catch (const Error& e) {
    return rejected(e);
  }
}

}  // namespace moeq::fuzz
