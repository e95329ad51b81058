#pragma once
// tokenizer.json "pre_tokenizer": Split (string or PCRE2 regex, every delimiter behavior),
// ByteLevel, Metaspace, Digits and Sequence. Pieces stay raw UTF-8 bytes: ByteLevel's byte ->
// printable-character mapping is undone on the vocabulary instead (see bpe.h).
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moeq::tok {

struct Piece {
  std::string text;
  bool at_start = false;  // begins at offset 0 of the original input (Metaspace "first")
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void apply(std::vector<Piece>& pieces) const = 0;
};

struct PreTokenizerInfo {
  bool byte_level = false;  // a ByteLevel pre-tokenizer is present: the vocabulary is byte-level
};

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where,
                                                 PreTokenizerInfo& info);

}  // namespace moeq::tok
