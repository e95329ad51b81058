#include "calib/tokenizer/normalizer.h"

#include <vector>

#include "calib/tokenizer/regex.h"
#include "core/error.h"

namespace moeq::tok {

Pattern parse_pattern(const nlohmann::json& j, const std::string& where) {
  if (j.is_object() && j.contains("String") && j["String"].is_string()) return {false, j["String"].get<std::string>()};
  if (j.is_object() && j.contains("Regex") && j["Regex"].is_string()) return {true, j["Regex"].get<std::string>()};
  throw Error(where + ": 'pattern' must be {\"String\": ...} or {\"Regex\": ...}");
}

namespace {

class UnicodeForm : public Normalizer {
 public:
  explicit UnicodeForm(std::string form) : form_(std::move(form)) {}
  void apply(std::string& s) const override { s = unicode_normalize(s, form_); }
 private:
  std::string form_;
};

class Lowercase : public Normalizer {
 public:
  void apply(std::string& s) const override { s = unicode_lowercase(s); }
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string p) : prefix_(std::move(p)) {}
  void apply(std::string& s) const override {
    if (!s.empty()) s.insert(0, prefix_);  // an empty segment stays empty
  }
 private:
  std::string prefix_;
};

class Replace : public Normalizer {
 public:
  Replace(const Pattern& p, std::string content, const std::string& where) : pattern_(p), content_(std::move(content)) {
    if (p.is_regex) regex_ = std::make_unique<Regex>(p.text, where);
    else if (p.text.empty()) throw Error(where + ": Replace with an empty pattern");
  }
  void apply(std::string& s) const override {
    std::vector<std::pair<size_t, size_t>> m;
    if (regex_) {
      regex_->find_all(s, m);
    } else {
      for (size_t at = s.find(pattern_.text); at != std::string::npos; at = s.find(pattern_.text, at + pattern_.text.size()))
        m.emplace_back(at, at + pattern_.text.size());
    }
    if (m.empty()) return;
    std::string out;
    out.reserve(s.size() + m.size() * content_.size());
    size_t prev = 0;
    for (auto [b, e] : m) {
      out.append(s, prev, b - prev);
      out += content_;
      prev = e;
    }
    out.append(s, prev, std::string::npos);
    s.swap(out);
  }
 private:
  Pattern pattern_;
  std::string content_;
  std::unique_ptr<Regex> regex_;
};

// Unicode White_Space of tokenizers' Strip (char::is_whitespace): ASCII and the common others.
bool is_space_at(const std::string& s, size_t i, size_t& len);

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void apply(std::string& s) const override {
    size_t b = 0, e = s.size(), len = 0;
    if (left_)
      while (b < e && is_space_at(s, b, len)) b += len;
    if (right_) {
      while (e > b) {
        size_t k = e - 1;
        while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        if (!is_space_at(s, k, len)) break;
        e = k;
      }
    }
    s = s.substr(b, e - b);
  }
 private:
  bool left_, right_;
};

bool is_space_at(const std::string& s, size_t i, size_t& len) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c == ' ' || (c >= 0x09 && c <= 0x0D)) { len = 1; return true; }
  static const char* const others[] = {"\xC2\x85", "\xC2\xA0", "\xE1\x9A\x80", "\xE2\x80\x80", "\xE2\x80\x81",
                                       "\xE2\x80\x82", "\xE2\x80\x83", "\xE2\x80\x84", "\xE2\x80\x85", "\xE2\x80\x86",
                                       "\xE2\x80\x87", "\xE2\x80\x88", "\xE2\x80\x89", "\xE2\x80\x8A", "\xE2\x80\xA8",
                                       "\xE2\x80\xA9", "\xE2\x80\xAF", "\xE2\x81\x9F", "\xE3\x80\x80"};
  for (const char* o : others) {
    const size_t n = std::char_traits<char>::length(o);
    if (s.compare(i, n, o) == 0) { len = n; return true; }
  }
  return false;
}

class Sequence : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void apply(std::string& s) const override {
    for (const auto& p : parts_) p->apply(s);
  }
 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    throw Error(where + ": a normalizer must be an object with a 'type'");
  const std::string type = j["type"];
  const std::string here = where + " (" + type + ")";
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") return std::make_unique<UnicodeForm>(type);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Prepend") return std::make_unique<Prepend>(j.at("prepend").get<std::string>());
  if (type == "Replace") return std::make_unique<Replace>(parse_pattern(j.at("pattern"), here), j.at("content").get<std::string>(), here);
  if (type == "Strip") return std::make_unique<Strip>(j.value("strip_left", false), j.value("strip_right", false));
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    const auto& list = j.at("normalizers");
    for (size_t i = 0; i < list.size(); ++i) {
      auto n = make_normalizer(list[i], where + ".normalizers[" + std::to_string(i) + "]");
      if (n) parts.push_back(std::move(n));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  throw Error(where + ": normalizer type '" + type +
              "' is not implemented by moeq's tokenizer (NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence are)");
}

}  // namespace moeq::tok
