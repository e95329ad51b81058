#pragma once
// A native reader of a Hugging Face tokenizer.json (BPE models: byte-level BPE as in
// Qwen2/3, GPT-NeoX/OLMoE, DeepSeek, newer Mistral; SentencePiece-style BPE with byte
// fallback as in Llama/Mixtral and Gemma), plus BOS/EOS from tokenizer_config.json.
// Encoding follows tokenizers' pipeline: added tokens are split out of the raw text, each
// remaining segment is normalized, pre-tokenized and BPE-encoded, and the post-processor's
// template adds the special tokens. Ids equal tokenizers' (tests/calib/test_tokenizer*.cpp
// compare them on real tokenizer files). Not thread-safe (a per-word cache).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moeq::tok {
class BpeModel;
class Normalizer;
class PreTokenizer;
struct AddedTokens;
}  // namespace moeq::tok

namespace moeq {

class Tokenizer {
 public:
  // Reads TOKENIZER_JSON and, when CONFIG_JSON is non-empty and exists, tokenizer_config.json.
  static std::unique_ptr<Tokenizer> from_files(const std::string& tokenizer_json, const std::string& config_json);
  // MODEL_DIR/tokenizer.json and MODEL_DIR/tokenizer_config.json.
  static std::unique_ptr<Tokenizer> from_model_dir(const std::string& model_dir);
  // False when moeq was built without PCRE2/utf8proc: from_files then throws.
  static bool available();
  ~Tokenizer();

  // Token ids of `text` (valid UTF-8, else moeq::Error with the byte offset). With
  // add_special_tokens the post-processor's template (e.g. BOS) is applied.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const;

  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::optional<int32_t> eos_id() const { return eos_id_; }
  // Id of a token (vocabulary or added token) as written in tokenizer.json, or -1.
  int32_t token_id(const std::string& token) const;
  int64_t vocab_size() const;  // largest id + 1
  const std::vector<int32_t>& template_prefix() const { return prefix_; }
  const std::vector<int32_t>& template_suffix() const { return suffix_; }
  // One line: kind of model, vocabulary size, normalizer/pre-tokenizer summary, BOS/EOS.
  const std::string& summary() const { return summary_; }

 private:
  Tokenizer() = default;
  void encode_segment(std::string text, bool at_start, std::vector<int32_t>& out) const;

  std::string path_;
  std::unique_ptr<tok::Normalizer> normalizer_;
  std::unique_ptr<tok::PreTokenizer> pre_tokenizer_;
  std::unique_ptr<tok::BpeModel> model_;
  std::unique_ptr<tok::AddedTokens> added_raw_;         // matched on the raw text
  std::unique_ptr<tok::AddedTokens> added_normalized_;  // matched on normalized segments
  std::vector<int32_t> prefix_, suffix_;                // post-processor template around the text
  std::optional<int32_t> bos_id_, eos_id_;
  int64_t max_id_ = -1;
  std::string summary_;
};

}  // namespace moeq
