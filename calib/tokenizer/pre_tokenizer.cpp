#include "calib/tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <utility>

#include "calib/tokenizer/normalizer.h"
#include "calib/tokenizer/regex.h"
#include "calib/tokenizer/utf8.h"
#include "core/error.h"

namespace moeq::tok {
namespace {

using Spans = std::vector<std::pair<size_t, size_t>>;

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior parse_behavior(const std::string& b, const std::string& where) {
  if (b == "Removed") return Behavior::Removed;
  if (b == "Isolated") return Behavior::Isolated;
  if (b == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::MergedWithNext;
  if (b == "Contiguous") return Behavior::Contiguous;
  throw Error(where + ": unknown split behavior '" + b + "'");
}

// Cuts `piece` at the given matches (sorted, non-overlapping) the way tokenizers'
// NormalizedString::split does: the matches and the gaps between them form a cover of the
// piece, `invert` swaps which of them count as delimiters, and the behavior decides where
// delimiters go. Empty results are dropped.
void split_piece(const Piece& piece, const Spans& matches, Behavior behavior, bool invert, std::vector<Piece>& out) {
  struct Part { size_t b, e; bool delim; };
  std::vector<Part> parts;
  size_t prev = 0;
  for (auto [b, e] : matches) {
    if (b > prev) parts.push_back({prev, b, invert});
    parts.push_back({b, e, !invert});
    prev = e;
  }
  if (prev < piece.text.size()) parts.push_back({prev, piece.text.size(), invert});

  std::vector<std::pair<size_t, size_t>> kept;
  bool previous_delim = false;
  switch (behavior) {
    case Behavior::Isolated:
      for (const auto& p : parts) kept.emplace_back(p.b, p.e);
      break;
    case Behavior::Removed:
      for (const auto& p : parts)
        if (!p.delim) kept.emplace_back(p.b, p.e);
      break;
    case Behavior::MergedWithPrevious:
      for (const auto& p : parts) {
        if (p.delim && !previous_delim && !kept.empty()) kept.back().second = p.e;
        else kept.emplace_back(p.b, p.e);
        previous_delim = p.delim;
      }
      break;
    case Behavior::MergedWithNext:
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->delim && !previous_delim && !kept.empty()) kept.back().first = it->b;
        else kept.emplace_back(it->b, it->e);
        previous_delim = it->delim;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    case Behavior::Contiguous:
      for (const auto& p : parts) {
        if (p.delim == previous_delim && !kept.empty()) kept.back().second = p.e;
        else kept.emplace_back(p.b, p.e);
        previous_delim = p.delim;
      }
      break;
  }
  for (auto [b, e] : kept)
    if (e > b) out.push_back({piece.text.substr(b, e - b), piece.at_start && b == 0});
}

void literal_matches(const std::string& s, const std::string& lit, Spans& out) {
  if (lit.empty()) return;
  for (size_t at = s.find(lit); at != std::string::npos; at = s.find(lit, at + lit.size()))
    out.emplace_back(at, at + lit.size());
}

class Split : public PreTokenizer {
 public:
  Split(const Pattern& p, Behavior b, bool invert, const std::string& where) : pattern_(p), behavior_(b), invert_(invert) {
    if (p.is_regex) regex_ = std::make_unique<Regex>(p.text, where);
  }
  void apply(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size() * 4);
    Spans m;
    for (const auto& piece : pieces) {
      m.clear();
      if (regex_) regex_->find_all(piece.text, m);
      else literal_matches(piece.text, pattern_.text, m);
      split_piece(piece, m, behavior_, invert_, out);
    }
    pieces.swap(out);
  }
 private:
  Pattern pattern_;
  Behavior behavior_;
  bool invert_;
  std::unique_ptr<Regex> regex_;
};

// GPT-2's pattern, the one ByteLevel applies when use_regex is true.
const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevel : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex, const std::string& where) : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = std::make_unique<Regex>(kGpt2Pattern, where);
  }
  void apply(std::vector<Piece>& pieces) const override {
    if (add_prefix_space_)
      for (auto& p : pieces)
        if (p.text.empty() || p.text[0] != ' ') p.text.insert(0, " ");
    if (!regex_) return;
    std::vector<Piece> out;
    out.reserve(pieces.size() * 4);
    Spans m;
    for (const auto& piece : pieces) {
      m.clear();
      regex_->find_all(piece.text, m);
      split_piece(piece, m, Behavior::Isolated, false, out);
    }
    pieces.swap(out);
  }
 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class Metaspace : public PreTokenizer {
 public:
  enum class Prepend { Always, First, Never };
  Metaspace(std::string replacement, Prepend prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend), split_(split) {}
  void apply(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    Spans m;
    for (auto& p : pieces) {
      std::string t;
      t.reserve(p.text.size() + replacement_.size());
      for (char c : p.text) {
        if (c == ' ') t += replacement_;
        else t.push_back(c);
      }
      const bool starts = t.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (prepend_ == Prepend::Always || (prepend_ == Prepend::First && p.at_start))) t.insert(0, replacement_);
      Piece q{std::move(t), p.at_start};
      if (!split_) {
        out.push_back(std::move(q));
        continue;
      }
      m.clear();
      literal_matches(q.text, replacement_, m);
      split_piece(q, m, Behavior::MergedWithNext, false, out);
    }
    pieces.swap(out);
  }
 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_;
};

// Digits: runs of ASCII digits split from the rest (each digit alone when individual_digits).
// tokenizers also splits other Unicode digits; moeq recognises ASCII ones only.
class Digits : public PreTokenizer {
 public:
  explicit Digits(bool individual) : individual_(individual) {}
  void apply(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    Spans m;
    for (const auto& p : pieces) {
      m.clear();
      for (size_t i = 0; i < p.text.size(); ++i)
        if (p.text[i] >= '0' && p.text[i] <= '9') m.emplace_back(i, i + 1);
      split_piece(p, m, individual_ ? Behavior::Isolated : Behavior::Contiguous, false, out);
    }
    pieces.swap(out);
  }
 private:
  bool individual_;
};

class Sequence : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void apply(std::vector<Piece>& pieces) const override {
    for (const auto& p : parts_) p->apply(pieces);
  }
 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where,
                                                 PreTokenizerInfo& info) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    throw Error(where + ": a pre_tokenizer must be an object with a 'type'");
  const std::string type = j["type"];
  const std::string here = where + " (" + type + ")";
  if (info.byte_level)
    throw Error(here + ": a pre-tokenizer after ByteLevel is not supported by moeq's tokenizer");
  if (type == "Split")
    return std::make_unique<Split>(parse_pattern(j.at("pattern"), here), parse_behavior(j.at("behavior").get<std::string>(), here),
                                   j.value("invert", false), here);
  if (type == "ByteLevel") {
    info.byte_level = true;
    return std::make_unique<ByteLevel>(j.value("add_prefix_space", false), j.value("use_regex", true), here);
  }
  if (type == "Metaspace") {
    std::string rep = j.contains("replacement") ? j["replacement"].get<std::string>() : std::string("\xE2\x96\x81");
    Metaspace::Prepend scheme = Metaspace::Prepend::Always;
    if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
      const std::string s = j["prepend_scheme"];
      if (s == "always") scheme = Metaspace::Prepend::Always;
      else if (s == "first") scheme = Metaspace::Prepend::First;
      else if (s == "never") scheme = Metaspace::Prepend::Never;
      else throw Error(here + ": unknown prepend_scheme '" + s + "'");
    } else if (j.contains("add_prefix_space")) {
      scheme = j["add_prefix_space"].get<bool>() ? Metaspace::Prepend::Always : Metaspace::Prepend::Never;
    }
    return std::make_unique<Metaspace>(rep, scheme, j.value("split", true));
  }
  if (type == "Digits") return std::make_unique<Digits>(j.value("individual_digits", false));
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    const auto& list = j.at("pretokenizers");
    for (size_t i = 0; i < list.size(); ++i) {
      auto p = make_pre_tokenizer(list[i], where + ".pretokenizers[" + std::to_string(i) + "]", info);
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  throw Error(where + ": pre_tokenizer type '" + type +
              "' is not implemented by moeq's tokenizer (Split, ByteLevel, Metaspace, Digits, Sequence are)");
}

}  // namespace moeq::tok
