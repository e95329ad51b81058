#include "export/bnb/bnb_scheme.h"

#include <cctype>

#include "core/error.h"

namespace moeq::bnb_scheme {
namespace {

bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'; }

// re.match(pattern, s) for a pattern of name characters ('.' matches any character).
bool prefix_match(const std::string& pattern, const std::string& s) {
  if (s.size() < pattern.size()) return false;
  for (size_t i = 0; i < pattern.size(); ++i)
    if (pattern[i] != '.' && pattern[i] != s[i]) return false;
  return true;
}

}  // namespace

bool skip_entry_matches(const std::string& entry, const std::string& module) {
  if (!entry.empty() && entry.back() == '$') {  // escaped and anchored: `a\.b$` matches module `a.b` only
    std::string name;
    for (size_t i = 0; i + 1 < entry.size(); ++i) {
      if (entry[i] == '\\' && i + 2 < entry.size() && entry[i + 1] == '.') {
        name += '.';
        ++i;
      } else if (entry[i] != '\\' && entry[i] != '.' && is_name_char(entry[i])) {
        name += entry[i];
      } else {
        throw Error("llm_int8_skip_modules entry '" + entry + "': moeq reads module names and escaped `name$` regexes only");
      }
    }
    return name == module;
  }
  for (char c : entry)
    if (!is_name_char(c))
      throw Error("llm_int8_skip_modules entry '" + entry + "': moeq reads module names and escaped `name$` regexes only");
  const bool ends = module.size() >= entry.size() && module.compare(module.size() - entry.size(), entry.size(), entry) == 0;
  return prefix_match(entry, module) || ends;  // re.match(entry + "\.") implies re.match(entry)
}

std::string anchored_skip_entry(const std::string& module) {
  std::string out;
  for (char c : module) out += c == '.' ? std::string("\\.") : std::string(1, c);
  return out + "$";
}

}  // namespace moeq::bnb_scheme
