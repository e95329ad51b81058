#pragma once
// A byte-level BPE tokenizer.json for the fuzz targets: the 256 byte symbols (id = byte), a few
// merges, NFC normalizer, GPT-2 regex pre-tokenizer, <|endoftext|> 256, <|im_start|> 257,
// <|im_end|> 258. (The tests build the same with tests/calib/tokenizer_test_util.h, on Catch2.)
#include <string>

#include <nlohmann/json.hpp>

#include "calib/tokenizer/utf8.h"

namespace moeq::fuzz {

inline std::string byte_level_tokenizer_json() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) {
    std::string s;
    tok::append_utf8(s, tok::byte_level_alphabet()[b]);
    vocab[s] = b;
  }
  vocab["he"] = 259;
  vocab["ll"] = 260;
  nlohmann::json added = nlohmann::json::array();
  int id = 256;
  for (const char* t : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"})
    added.push_back({{"id", id++}, {"content", t}, {"special", true}, {"normalized", false}, {"lstrip", false},
                     {"rstrip", false}, {"single_word", false}});
  nlohmann::json j = {{"version", "1.0"},
                      {"added_tokens", added},
                      {"normalizer", {{"type", "NFC"}}},
                      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
                      {"post_processor", {{"type", "ByteLevel"}}},
                      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array({"h e", "l l"})}}}};
  return j.dump();
}

}  // namespace moeq::fuzz
