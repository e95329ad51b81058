#pragma once
// tokenizer.json "normalizer": NFC/NFD/NFKC/NFKD, Lowercase, Prepend, Replace (string or
// regex), Strip and Sequence of them, applied to each text segment between added tokens.
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace moeq::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void apply(std::string& s) const = 0;
};

// nullptr for a JSON null. Throws moeq::Error naming `where` for a type moeq does not
// implement (the tokenizer would otherwise give different ids than the model was trained on).
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where);

// The literal or regex of a Replace/Split "pattern": {"String": s} or {"Regex": r}.
struct Pattern {
  bool is_regex = false;
  std::string text;
};
Pattern parse_pattern(const nlohmann::json& j, const std::string& where);

}  // namespace moeq::tok
