#pragma once
// Deterministic mutations for the fuzz replays in CI (a stand-in for libFuzzer's engine):
// bit flips, truncations, syntax bytes of the formats under test, repeated and deleted spans,
// splices of two seeds, and edits of little-endian length fields.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace moeq::fuzz {

inline std::string mutate(const std::vector<std::string>& seeds, std::mt19937_64& rng) {
  std::string s = seeds[rng() % seeds.size()];
  static const char kSyntax[] = "0123456789-.eE[]{}()\"':,;#&*!|>?%@`~\\\n\t /=+_$^\xff\xc3\xa9\xe2\x80";
  const int edits = 1 + static_cast<int>(rng() % 6);
  for (int k = 0; k < edits; ++k) {
    if (s.empty()) {
      s = seeds[rng() % seeds.size()];
      continue;
    }
    const size_t at = rng() % s.size();
    switch (rng() % 9) {
      case 0: s[at] ^= static_cast<char>(1u << (rng() % 8)); break;
      case 1: s.resize(at); break;
      case 2: s[at] = kSyntax[rng() % (sizeof(kSyntax) - 1)]; break;
      case 3: s.insert(at, std::string(1 + rng() % 8, kSyntax[rng() % (sizeof(kSyntax) - 1)])); break;
      case 4: s.erase(at, 1 + rng() % 16); break;
      case 5: {  // repeat a span (deep nesting, long lines)
        const size_t len = 1 + rng() % std::min<size_t>(32, s.size() - at);
        const std::string span = s.substr(at, len);
        for (int r = 0, n = 1 + static_cast<int>(rng() % 64); r < n; ++r) s.insert(at, span);
        break;
      }
      case 6: {  // splice: this seed's head, another's tail
        const std::string& o = seeds[rng() % seeds.size()];
        if (!o.empty()) s = s.substr(0, at) + o.substr(rng() % o.size());
        break;
      }
      case 7: {  // a little-endian integer field: 0, huge, small, off by one
        const uint64_t v[] = {0, 1, 0xffffffffull, 0xffffffffffffffffull, rng() % 4096, 0x7fffffffull};
        const uint64_t x = v[rng() % 6];
        for (int b = 0; b < 8 && at + b < s.size(); ++b) s[at + b] = static_cast<char>(x >> (8 * b));
        break;
      }
      case 8: s[at] = static_cast<char>(rng()); break;
    }
  }
  return s;
}

}  // namespace moeq::fuzz
