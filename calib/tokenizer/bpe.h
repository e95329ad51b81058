#pragma once
// tokenizer.json "model" of type BPE: vocabulary, merges applied by rank with a priority queue
// over a linked list of symbols (n log n per word, no rescans), byte fallback to <0xXX>
// tokens, unknown-token fusing, ignore_merges, and a per-word cache.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace moeq::tok {

class BpeModel {
 public:
  // byte_level: vocabulary strings are in the byte-level alphabet (a ByteLevel pre-tokenizer is
  // present); they are turned back into raw bytes so that words are encoded byte by byte.
  BpeModel(const nlohmann::json& model, bool byte_level, const std::string& where);

  // Appends the ids of one pre-tokenized word (raw UTF-8 bytes).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  // Id of a vocabulary string as written in tokenizer.json, or -1.
  int32_t id_of(const std::string& token) const;
  int64_t vocab_size() const { return static_cast<int64_t>(vocab_.size()); }
  size_t merges() const { return merge_.size(); }
  bool byte_fallback() const { return byte_fallback_; }

 private:
  void merge_symbols(std::vector<int32_t>& ids) const;
  void initial_symbols(std::string_view word, std::vector<int32_t>& ids) const;

  bool byte_level_;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  int32_t unk_id_ = -1;
  std::string where_;
  std::unordered_map<std::string, int32_t> vocab_;         // as in tokenizer.json
  std::unordered_map<std::string, int32_t> raw_vocab_;     // raw bytes (byte-level vocabularies)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merge_;  // (left, right) -> (rank, merged id)
  int32_t byte_ids_[256];       // byte-level: the id of each byte's token
  int32_t fallback_ids_[256];   // byte fallback: the id of <0xXX>, or -1
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace moeq::tok
