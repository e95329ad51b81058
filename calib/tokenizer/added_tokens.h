#pragma once
// Added tokens (tokenizer.json "added_tokens": special tokens such as <|im_end|> or <s>, and
// extra vocabulary) found in text before the BPE model sees it: leftmost-longest matching over
// a byte trie, with the lstrip / rstrip / single_word options of tokenizers.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace moeq::tok {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool lstrip = false, rstrip = false, single_word = false;
};

struct AddedSplit {
  size_t begin = 0, end = 0;
  int32_t id = -1;  // -1: plain text to encode
};

struct AddedTokens {
  void add(const AddedToken& t);
  bool empty() const { return tokens.empty(); }
  // Cuts `s` into text spans and added-token spans, in order; text spans may be empty-free.
  std::vector<AddedSplit> split(std::string_view s) const;

  std::vector<AddedToken> tokens;
  std::unordered_map<uint64_t, int32_t> edges;  // (node << 8 | byte) -> child node
  std::vector<int32_t> terminal{-1};            // node -> index into tokens, or -1
  bool first_byte[256] = {};
};

}  // namespace moeq::tok
