#pragma once
// The fuzzed operations: arbitrary bytes as a tokenizer.json (loaded, then encoding fixed
// texts), and as a text to encode with a given tokenizer.
#include <memory>
#include <string_view>

#include "calib/tokenizer/tokenizer.h"
#include "fuzz/scratch.h"

namespace moeq::fuzz {

// tokenizer.json bytes: load it, then encode a few fixed texts (plain, accents, special
// tokens, bytes that need the byte fallback).
inline int tokenizer_load_one(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("tokenizer.json", data, size);
  try {
    auto tok = Tokenizer::from_files(path, "");
    size_t n = 0;
    for (const char* text : {"Hello world, 12345!", "  caf\xc3\xa9 na\xc3\xafve \xe2\x80\x94 \xe4\xb8\xad\xe6\x96\x87",
                             "<|im_start|>user\nhi<|im_end|>", "\t\n\x01 \xf0\x9f\x98\x80 x"})
      n += tok->encode(text, true).size();
    return static_cast<int>(n & 1);
  } catch (const Error& e) {
    return rejected(e);
  }
}

// Arbitrary bytes as the text to encode with a given tokenizer.
inline int tokenizer_encode_one(const Tokenizer& tok, const uint8_t* data, size_t size) {
  try {
    return static_cast<int>(tok.encode(std::string_view(reinterpret_cast<const char*>(data), size), true).size() & 1);
  } catch (const Error& e) {
    return rejected(e);
  }
}

}  // namespace moeq::fuzz
