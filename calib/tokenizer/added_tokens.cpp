#include "calib/tokenizer/added_tokens.h"

namespace moeq::tok {
namespace {
bool is_space(unsigned char c) { return c == ' ' || (c >= 0x09 && c <= 0x0D); }
// Word characters for single_word: ASCII letters, digits and '_'; any non-ASCII byte is taken
// as part of a word (tokenizers asks char::is_alphanumeric).
bool is_word_byte(unsigned char c) { return c >= 0x80 || c == '_' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); }
}  // namespace

void AddedTokens::add(const AddedToken& t) {
  if (t.content.empty()) return;
  int32_t node = 0;
  for (char ch : t.content) {
    const auto c = static_cast<unsigned char>(ch);
    const uint64_t key = (static_cast<uint64_t>(node) << 8) | c;
    const auto it = edges.find(key);
    if (it != edges.end()) {
      node = it->second;
    } else {
      const auto child = static_cast<int32_t>(terminal.size());
      terminal.push_back(-1);
      edges.emplace(key, child);
      node = child;
    }
  }
  first_byte[static_cast<unsigned char>(t.content[0])] = true;
  if (terminal[node] < 0) {  // the first of two tokens with the same content wins
    terminal[node] = static_cast<int32_t>(tokens.size());
    tokens.push_back(t);
  }
}

std::vector<AddedSplit> AddedTokens::split(std::string_view s) const {
  std::vector<AddedSplit> out;
  size_t text_start = 0;  // start of the pending text span
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    if (!first_byte[static_cast<unsigned char>(s[i])]) { ++i; continue; }
    // longest token starting at i
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t k = i; k < n; ++k) {
      const auto it = edges.find((static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(s[k]));
      if (it == edges.end()) break;
      node = it->second;
      if (terminal[node] >= 0) { best = terminal[node]; best_end = k + 1; }
    }
    if (best < 0) { ++i; continue; }
    const AddedToken& t = tokens[best];
    size_t b = i, e = best_end;
    if (t.single_word) {
      const bool left_ok = b == 0 || !is_word_byte(static_cast<unsigned char>(s[b - 1]));
      const bool right_ok = e == n || !is_word_byte(static_cast<unsigned char>(s[e]));
      if (!left_ok || !right_ok) { ++i; continue; }
    }
    if (t.lstrip)
      while (b > text_start && is_space(static_cast<unsigned char>(s[b - 1]))) --b;
    if (t.rstrip)
      while (e < n && is_space(static_cast<unsigned char>(s[e]))) ++e;
    if (b > text_start) out.push_back({text_start, b, -1});
    out.push_back({b, e, t.id});
    text_start = e;
    i = e;
  }
  if (text_start < n) out.push_back({text_start, n, -1});
  return out;
}

}  // namespace moeq::tok
