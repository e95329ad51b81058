// Calibration data through real tokenizers (the tokenizer_oracle fixture's files): chat
// messages use each family's turn markers as special ids, BOS/EOS follow the family's config.
#include <cstdlib>
#include <filesystem>

#include "calib/tokenizer/tokenizer.h"
#include "tests/calib/dataset_test_util.h"

using moeq::load_calibration_tokens;
using moeq::test::TempDir;
using moeq::test::write_file;

namespace {
std::string family_dir(const char* fam) {
  const char* d = std::getenv("MOEQ_ORACLE_DIR");
  if (!d) SKIP("MOEQ_ORACLE_DIR not set (run through ctest)");
  const std::string dir = std::string(d) + "/tokenizers/" + fam;
  REQUIRE(std::filesystem::exists(dir + "/tokenizer.json"));
  return dir;
}

std::vector<int64_t> first_row(const std::string& data, const std::string& dir, int64_t len) {
  return moeq::test::rows_of(load_calibration_tokens(moeq::test::spec(data, dir, 1, len)).ids)[0];
}
}  // namespace

TEST_CASE("chat data with real tokenizers: turn markers are special ids, BOS/EOS per family", "[tokenizer-oracle][dataset]") {
  if (!moeq::Tokenizer::available()) SKIP("built without PCRE2/utf8proc");
  TempDir d;
  const std::string chat = d.path + "/chat.jsonl";
  write_file(chat, R"({"messages": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."}]})" "\n"
                   R"({"text": "Plain text."})" "\n");
  {
    const auto dir = family_dir("qwen3");
    const auto tok = moeq::Tokenizer::from_model_dir(dir);
    const auto row = first_row(chat, dir, 12);
    CHECK(row[0] == tok->token_id("<|im_start|>"));
    CHECK(row[0] == 151644);
    // "<|im_start|>user\nHi!<|im_end|>\n": no BOS for Qwen; <|im_end|> is also its EOS, not doubled
    const auto user = tok->encode("user\nHi!", false);
    for (size_t i = 0; i < user.size(); ++i) CHECK(row[1 + i] == user[i]);
    CHECK(row[1 + user.size()] == 151645);
  }
  {
    const auto dir = family_dir("gemma3");
    const auto tok = moeq::Tokenizer::from_model_dir(dir);
    const auto row = first_row(chat, dir, 8);
    CHECK(row[0] == 2);  // <bos> from the post-processor
    CHECK(row[1] == tok->token_id("<start_of_turn>"));
    CHECK(tok->token_id("<start_of_turn>") > 0);
  }
  {
    const auto dir = family_dir("mixtral_legacy");  // no turn tokens: "role: content" lines, <s> first, </s> last
    const auto tok = moeq::Tokenizer::from_model_dir(dir);
    const auto t = load_calibration_tokens(moeq::test::spec(chat, dir, 1, 8));
    CHECK(moeq::test::rows_of(t.ids)[0][0] == 1);
    CHECK_THAT(t.description, Catch::Matchers::ContainsSubstring("'role: content' lines"));
    const auto doc = tok->encode("user: Hi!\nassistant: Hello.\n", true);
    const auto plain = tok->encode("Plain text.", true);
    std::vector<int64_t> expected(doc.begin(), doc.end());
    expected.push_back(2);  // </s>
    expected.insert(expected.end(), plain.begin(), plain.end());
    expected.push_back(2);
    CHECK(first_row(chat, dir, static_cast<int64_t>(expected.size())) == expected);
  }
}
