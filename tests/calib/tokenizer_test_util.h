#pragma once
// Small tokenizer.json files written by the tests, with ids that can be derived by hand.
#include <string>

#include <nlohmann/json.hpp>

#include "calib/tokenizer/utf8.h"
#include "test_util.h"

namespace moeq::test {

// Byte-level BPE over all 256 bytes (id = byte value) with no merges, GPT-2 regex, and
// <|endoftext|> 256, <|im_start|> 257, <|im_end|> 258; EOS <|endoftext|>.
inline nlohmann::json byte_tokenizer_json() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) {
    std::string s;
    tok::append_utf8(s, tok::byte_level_alphabet()[b]);
    vocab[s] = b;
  }
  nlohmann::json added = nlohmann::json::array();
  int id = 256;
  for (const char* t : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"})
    added.push_back({{"id", id++}, {"content", t}, {"special", true}, {"normalized", false}, {"lstrip", false}, {"rstrip", false}, {"single_word", false}});
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
          {"post_processor", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
}

inline void write_model_dir(const std::string& dir, const nlohmann::json& tokenizer, const nlohmann::json& config) {
  write_file(dir + "/tokenizer.json", tokenizer.dump());
  write_file(dir + "/tokenizer_config.json", config.dump());
}

}  // namespace moeq::test
