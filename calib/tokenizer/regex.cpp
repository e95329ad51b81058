#include "calib/tokenizer/regex.h"

#include "calib/tokenizer/utf8.h"
#include "core/error.h"

#ifdef MOEQ_WITH_TOKENIZER
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>
#endif

#include <cstdlib>

namespace moeq::tok {

#ifdef MOEQ_WITH_TOKENIZER

struct Regex::Impl {
  pcre2_code* code = nullptr;
  ~Impl() { pcre2_code_free(code); }
};

Regex::Regex(const std::string& pattern, const std::string& where) : impl_(std::make_unique<Impl>()) {
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &err_offset, nullptr);
  if (!impl_->code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw Error(where + ": regex '" + pattern + "' does not compile with PCRE2 at offset " +
                std::to_string(err_offset) + ": " + reinterpret_cast<char*>(msg));
  }
  pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
}

Regex::~Regex() = default;

void Regex::find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t start = 0;
  while (start <= s.size()) {
    const int rc = pcre2_match(impl_->code, subject, s.size(), start, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free(md);
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      throw Error(std::string("tokenizer regex match failed: ") + reinterpret_cast<char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(b, e);
      start = e;
    } else {  // empty match: step over one code point
      start = b + (b < s.size() ? utf8_sequence_length(static_cast<unsigned char>(s[b])) : 1);
    }
  }
  pcre2_match_data_free(md);
}

namespace {
bool is_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

std::string map_with(std::string_view s, int options) {
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                          static_cast<utf8proc_ssize_t>(s.size()), &out,
                                          static_cast<utf8proc_option_t>(options));
  if (n < 0) throw Error(std::string("unicode normalization failed: ") + utf8proc_errmsg(n));
  std::string r(reinterpret_cast<char*>(out), static_cast<size_t>(n));
  std::free(out);
  return r;
}
}  // namespace

std::string unicode_normalize(std::string_view s, const std::string& form) {
  if (is_ascii(s)) return std::string(s);
  int opt = UTF8PROC_STABLE;
  if (form == "NFC") opt |= UTF8PROC_COMPOSE;
  else if (form == "NFD") opt |= UTF8PROC_DECOMPOSE;
  else if (form == "NFKC") opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
  else if (form == "NFKD") opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
  else throw Error("unknown Unicode normalization form '" + form + "'");
  return map_with(s, opt);
}

std::string unicode_lowercase(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
      ++i;
      continue;
    }
    utf8proc_int32_t cp = 0;
    const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data()) + i,
                                    static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    if (n <= 0) throw Error("lowercase: invalid UTF-8");
    utf8proc_uint8_t buf[4];
    const auto m = utf8proc_encode_char(utf8proc_tolower(cp), buf);
    out.append(reinterpret_cast<char*>(buf), static_cast<size_t>(m));
    i += static_cast<size_t>(n);
  }
  return out;
}

#else  // built without PCRE2 / utf8proc

struct Regex::Impl {};
Regex::Regex(const std::string& pattern, const std::string& where) {
  throw Error(where + ": regex '" + pattern + "' needs PCRE2, and moeq was built without it");
}
Regex::~Regex() = default;
void Regex::find_all(std::string_view, std::vector<std::pair<size_t, size_t>>&) const {}
std::string unicode_normalize(std::string_view, const std::string& form) {
  throw Error("Unicode " + form + " normalization needs utf8proc, and moeq was built without it");
}
std::string unicode_lowercase(std::string_view) {
  throw Error("Unicode lowercasing needs utf8proc, and moeq was built without it");
}

#endif

}  // namespace moeq::tok
