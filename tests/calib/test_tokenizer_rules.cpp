// The tokenizer's rules on small hand-written tokenizer.json files, ids derived by hand:
// merge order, byte fallback, added-token options, split behaviors, Metaspace, errors.
#include "calib/tokenizer/tokenizer.h"
#include "tests/calib/tokenizer_test_util.h"

using moeq::Tokenizer;
using moeq::test::TempDir;
using moeq::test::write_file;
using nlohmann::json;
using Ids = std::vector<int32_t>;

namespace {
std::unique_ptr<Tokenizer> load(const TempDir& d, const json& t, const json& cfg = json::object()) {
  moeq::test::write_model_dir(d.path, t, cfg);
  return Tokenizer::from_model_dir(d.path);
}

json bpe(json vocab, json merges, bool ignore_merges = false) {
  return {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"ignore_merges", ignore_merges}};
}
}  // namespace

TEST_CASE("BPE merges by rank, leftmost first on ties", "[tokenizer]") {
  if (!Tokenizer::available()) SKIP("built without PCRE2/utf8proc");
  TempDir d;
  const json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}, {"aa", 6}};
  // "b c" outranks "a b": abc -> a|bc -> abc through "a bc"
  auto t = load(d, {{"model", bpe(vocab, {"b c", "a b", "a bc", "a a"})}});
  CHECK(t->encode("abc", false) == Ids{5});
  CHECK(t->encode("ab", false) == Ids{3});
  CHECK(t->encode("aaa", false) == Ids{6, 0});     // leftmost pair first
  CHECK(t->encode("aaaaa", false) == Ids{6, 6, 0});
  // without "a bc" the word stays a|bc although "ab" exists: merges, not the vocabulary, decide
  auto t2 = load(d, {{"model", bpe(vocab, {"b c", "a b"})}});
  CHECK(t2->encode("abc", false) == Ids{0, 4});
  // the pairs as [left, right] arrays (newer files) read the same
  auto t3 = load(d, {{"model", bpe(vocab, json::array({json::array({"b", "c"}), json::array({"a", "b"}), json::array({"a", "bc"})}))}});
  CHECK(t3->encode("abc", false) == Ids{5});
}

TEST_CASE("a long word merges fast and right", "[tokenizer]") {
  if (!Tokenizer::available()) SKIP("built without PCRE2/utf8proc");
  TempDir d;
  // a, aa, aaaa, ... 2^k: a word of 2^16 a's becomes 1 token, of 2^16 + 1 a's two
  json vocab = {{"a", 0}};
  json merges = json::array();
  std::string piece = "a";
  for (int k = 1; k <= 16; ++k) {
    merges.push_back(piece + " " + piece);
    piece += piece;
    vocab[piece] = k;
  }
  auto t = load(d, {{"model", bpe(vocab, merges)}});
  CHECK(t->encode(std::string(1 << 16, 'a'), false) == Ids{16});
  CHECK(t->encode(std::string((1 << 16) + 3, 'a'), false) == Ids{16, 1, 0});
}

TEST_CASE("SentencePiece-style BPE: Prepend/Replace normalizer, byte fallback, unknown fusing", "[tokenizer]") {
  if (!Tokenizer::available()) SKIP("built without PCRE2/utf8proc");
  TempDir d;
  json vocab = {{"<unk>", 0}, {"<s>", 1}};
  char name[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = 2 + b;
  }
  const std::string sp = "\xE2\x96\x81";  // ▁
  vocab[sp] = 300, vocab["h"] = 301, vocab["i"] = 302, vocab[sp + "h"] = 303, vocab[sp + "hi"] = 304;
  json model = bpe(vocab, {sp + " h", sp + "h i"});
  model["byte_fallback"] = true;
  model["unk_token"] = "<unk>";
  json t = {{"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "Prepend"}, {"prepend", sp}},
                                                                   {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", sp}}}}}},
            {"added_tokens", {{{"id", 1}, {"content", "<s>"}, {"special", true}, {"normalized", false}}}},
            {"post_processor", {{"type", "TemplateProcessing"},
                                {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                                {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
            {"model", model}};
  auto tk = load(d, t, {{"bos_token", "<s>"}, {"eos_token", nullptr}});
  // "hi é" -> "▁hi▁é": ▁hi, ▁, then é (C3 A9) as two byte tokens
  CHECK(tk->encode("hi \xC3\xA9", false) == Ids{304, 300, 2 + 0xC3, 2 + 0xA9});
  CHECK(tk->encode("hi", true) == Ids{1, 304});
  CHECK(tk->bos_id() == 1);
  CHECK_FALSE(tk->eos_id());
  // each segment between added tokens is normalized on its own (legacy Llama): "<s>hi" -> <s> ▁hi
  CHECK(tk->encode("hi<s>hi", false) == Ids{304, 1, 304});
  // without byte fallback an unknown character becomes <unk>, consecutive ones fused
  t["model"]["byte_fallback"] = false;
  t["model"]["fuse_unk"] = true;
  auto tu = load(d, t);
  CHECK(tu->encode("h\xC3\xA9\xC3\xA9i", false) == Ids{303, 0, 302});
}

TEST_CASE("added tokens: longest match, lstrip/rstrip, single_word, normalized content", "[tokenizer]") {
  if (!Tokenizer::available()) SKIP("built without PCRE2/utf8proc");
  TempDir d;
  json t = moeq::test::byte_tokenizer_json();
  auto& added = t["added_tokens"];
  added.push_back({{"id", 259}, {"content", "<|im"}, {"special", true}, {"normalized", false}});
  added.push_back({{"id", 260}, {"content", "[L]"}, {"special", true}, {"normalized", false}, {"lstrip", true}, {"rstrip", true}});
  added.push_back({{"id", 261}, {"content", "cat"}, {"special", false}, {"normalized", false}, {"single_word", true}});
  auto tk = load(d, t);
  CHECK(tk->encode("<|im_start|>", false) == Ids{257});       // longest wins over <|im
  CHECK(tk->encode("<|imx", false) == Ids{259, 'x'});
  CHECK(tk->encode("a  [L]  b", false) == Ids{'a', 260, 'b'});  // spaces on both sides go with it
  CHECK(tk->encode("cat concat cats", false) == Ids{261, ' ', 'c', 'o', 'n', 'c', 'a', 't', ' ', 'c', 'a', 't', 's'});
}

TEST_CASE("Split behaviors cut pieces like tokenizers", "[tokenizer]") {
  if (!Tokenizer::available()) SKIP("built without PCRE2/utf8proc");
  TempDir d;
  // every piece that can come out of "a-b--c" is one vocabulary entry (ignore_merges), so the
  // ids show where the pieces were cut
  json vocab = json::object();
  int id = 0;
  for (const char* p : {"a", "b", "c", "-", "a-", "b-", "-b", "-c", "--", "--c", "b--"}) vocab[p] = id++;
  auto ids = [&](const std::string& behavior, bool invert, const json& pattern) {
    json t = {{"pre_tokenizer", {{"type", "Split"}, {"pattern", pattern}, {"behavior", behavior}, {"invert", invert}}},
              {"model", bpe(vocab, json::array(), true)}};
    return load(d, t)->encode("a-b--c", false);
  };
  const json dash = {{"String", "-"}};
  const int a = 0, b = 1, c = 2, m = 3, am = 4, bm = 5, mb = 6, mc = 7, mm = 8;
  CHECK(ids("Removed", false, dash) == Ids{a, b, c});
  CHECK(ids("Isolated", false, dash) == Ids{a, m, b, m, m, c});
  CHECK(ids("MergedWithPrevious", false, dash) == Ids{am, bm, m, c});
  CHECK(ids("MergedWithNext", false, dash) == Ids{a, mb, m, mc});
  CHECK(ids("Contiguous", false, dash) == Ids{a, m, b, mm, c});
  CHECK(ids("Removed", true, dash) == Ids{m, m, m});  // invert: the letters are the delimiters
  CHECK(ids("Isolated", false, json{{"Regex", "-+"}}) == Ids{a, m, b, mm, c});
}

TEST_CASE("Metaspace prepends once (first) or per piece (always)", "[tokenizer]") {
  if (!Tokenizer::available()) SKIP("built without PCRE2/utf8proc");
  TempDir d;
  const std::string sp = "\xE2\x96\x81";
  json vocab = {{sp + "a", 0}, {"a", 1}, {sp, 2}, {"<x>", 3}};
  auto ids = [&](const std::string& scheme, bool split, const std::string& text) {
    json t = {{"pre_tokenizer", {{"type", "Metaspace"}, {"replacement", sp}, {"prepend_scheme", scheme}, {"split", split}}},
              {"added_tokens", {{{"id", 3}, {"content", "<x>"}, {"special", true}, {"normalized", false}}}},
              {"model", bpe(vocab, json::array(), true)}};
    return load(d, t)->encode(text, false);
  };
  CHECK(ids("first", false, "a<x>a") == Ids{0, 3, 1});
  CHECK(ids("always", false, "a<x>a") == Ids{0, 3, 0});
  CHECK(ids("never", false, "a<x>a") == Ids{1, 3, 1});
  CHECK(ids("first", true, "a a") == Ids{0, 0});
}

TEST_CASE("tokenizer errors name the file, the entry and what to do", "[tokenizer]") {
  if (!Tokenizer::available()) SKIP("built without PCRE2/utf8proc");
  TempDir d;
  json t = moeq::test::byte_tokenizer_json();
  t["normalizer"] = {{"type", "BertNormalizer"}};
  moeq::test::write_model_dir(d.path, t, json::object());
  REQUIRE_ERROR_MENTIONS(Tokenizer::from_model_dir(d.path), "tokenizer.json", "normalizer", "BertNormalizer", "not implemented");
  t = moeq::test::byte_tokenizer_json();
  t["model"]["type"] = "WordPiece";
  moeq::test::write_model_dir(d.path, t, json::object());
  REQUIRE_ERROR_MENTIONS(Tokenizer::from_model_dir(d.path), "WordPiece", "BPE");
  t = moeq::test::byte_tokenizer_json();
  t["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}, {"invert", false}};
  moeq::test::write_model_dir(d.path, t, json::object());
  REQUIRE_ERROR_MENTIONS(Tokenizer::from_model_dir(d.path), "pre_tokenizer", "(unclosed", "PCRE2");
  t = moeq::test::byte_tokenizer_json();
  t["model"]["merges"] = {"x y"};
  moeq::test::write_model_dir(d.path, t, json::object());
  REQUIRE_ERROR_MENTIONS(Tokenizer::from_model_dir(d.path), "merges[0]", "not in the vocabulary");
  moeq::test::write_model_dir(d.path, moeq::test::byte_tokenizer_json(), {{"eos_token", "<nope>"}});
  REQUIRE_ERROR_MENTIONS(Tokenizer::from_model_dir(d.path), "tokenizer_config.json", "eos_token", "<nope>");
  moeq::test::write_model_dir(d.path, moeq::test::byte_tokenizer_json(), {{"eos_token", {{"content", "<|im_end|>"}}}});
  const auto tk = Tokenizer::from_model_dir(d.path);
  CHECK(tk->eos_id() == 258);
  REQUIRE_ERROR_MENTIONS(tk->encode("ab\xFF" "c", false), "UTF-8", "byte offset 2");
  REQUIRE_ERROR_MENTIONS(tk->encode("\xED\xA0\x80", false), "byte offset 0");  // a surrogate
  REQUIRE_ERROR_MENTIONS(tk->encode("\xC0\xAF", false), "byte offset 0");      // overlong '/'
}
