#pragma once
// Unicode regular expressions for pre-tokenizer Split patterns and Replace normalizers:
// PCRE2 (UTF + Unicode properties for \p{L}, \s, ..., JIT-compiled). Built only with
// MOEQ_WITH_TOKENIZER (PCRE2 found); without it constructing one throws moeq::Error.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moeq::tok {

class Regex {
 public:
  // `where` names the tokenizer.json entry for error messages.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the non-overlapping, non-empty matches [begin, end) of valid UTF-8 `s`,
  // left to right.
  void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Unicode normalization forms ("NFC", "NFD", "NFKC", "NFKD") and lowercasing of valid UTF-8
// (utf8proc). ASCII-only input is returned unchanged without a copy through the library.
std::string unicode_normalize(std::string_view s, const std::string& form);
std::string unicode_lowercase(std::string_view s);

}  // namespace moeq::tok
