// moeq's tokenizer against the `tokenizers` library on real vocabularies of each family
// (tests/python/tokenizer_oracle.py says where each comes from): hard strings (emoji, CJK,
// combining marks, whitespace runs, digits, very long words, special tokens in text, random
// mixes) and a few MB of real text, whose single-core throughput is printed beside the library's.
#include <ctime>
#include <sstream>
#include <cstring>
#include <cstdlib>
#include <filesystem>

#include "calib/tokenizer/tokenizer.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

namespace {
std::string tokenizer_oracle_dir() {
  const char* d = std::getenv("MOEQ_ORACLE_DIR");
  if (!d) SKIP("MOEQ_ORACLE_DIR not set (run through ctest)");
  const std::string dir = std::string(d) + "/tokenizers";
  if (!std::filesystem::exists(dir + "/bench.json")) FAIL("no " << dir << "/bench.json: the tokenizer_oracle fixture did not run");
  return dir;
}

const char* const kFamilies[] = {"qwen3", "qwen3_5", "olmoe", "mistral_tekken", "mixtral_legacy", "mixtral_metaspace", "gemma3"};
}  // namespace

TEST_CASE("tokenizer ids equal the tokenizers library's on real vocabularies", "[tokenizer-oracle][tokenizer]") {
  if (!moeq::Tokenizer::available()) SKIP("built without PCRE2/utf8proc");
  const std::string dir = tokenizer_oracle_dir();
  for (const char* fam : kFamilies) {
    DYNAMIC_SECTION(fam) {
      const auto tok = moeq::Tokenizer::from_model_dir(dir + "/" + fam);
      const auto cases = nlohmann::json::parse(moeq::test::read_file(dir + "/" + fam + "/cases.json"));
      REQUIRE(cases.size() > 100);
      size_t checked = 0;
      for (const auto& c : cases) {
        const std::string text = c["text"];
        INFO(fam << " text (" << text.size() << " bytes): " << text.substr(0, 200));
        CHECK(tok->encode(text, false) == c["ids"].get<std::vector<int32_t>>());
        CHECK(tok->encode(text, true) == c["ids_special"].get<std::vector<int32_t>>());
        ++checked;
      }
      CHECK(checked == cases.size());
    }
  }
}

TEST_CASE("tokenizer on a few MB of text: same ids as the library, throughput", "[tokenizer-oracle][tokenizer]") {
  if (!moeq::Tokenizer::available()) SKIP("built without PCRE2/utf8proc");
  const std::string dir = tokenizer_oracle_dir();
  std::vector<std::string> docs;
  size_t bytes = 0;
  {
    std::istringstream in(moeq::test::read_file(dir + "/bench.jsonl"));
    for (std::string line; std::getline(in, line);) {
      docs.push_back(nlohmann::json::parse(line)["text"].get<std::string>());
      bytes += docs.back().size();
    }
  }
  const auto bench = nlohmann::json::parse(moeq::test::read_file(dir + "/bench.json"));
  for (const char* fam : kFamilies) {
    DYNAMIC_SECTION(fam) {
      const auto tok = moeq::Tokenizer::from_model_dir(dir + "/" + fam);
      const std::string raw = moeq::test::read_file(dir + "/" + fam + "/bench_ids.bin");
      std::vector<int32_t> expected(raw.size() / 4);
      std::memcpy(expected.data(), raw.data(), raw.size());
      // CPU time of this thread's process (single-threaded encode), as the machine may be shared
      const std::clock_t c0 = std::clock();
      std::vector<int32_t> ids;
      for (const auto& d : docs) {
        const auto part = tok->encode(d, false);
        ids.insert(ids.end(), part.begin(), part.end());
      }
      const double s = double(std::clock() - c0) / CLOCKS_PER_SEC;
      const double lib = bench["families"][fam]["tokens_per_s"];
      WARN(fam << ": " << bytes / 1e6 << " MB in " << docs.size() << " documents, " << ids.size() << " tokens; moeq "
               << ids.size() / s / 1e6 << " M tokens/s, tokenizers " << lib / 1e6 << " M tokens/s (one core, CPU time)");
      REQUIRE(ids.size() == expected.size());
      size_t first_diff = ids.size();
      for (size_t i = 0; i < ids.size() && first_diff == ids.size(); ++i)
        if (ids[i] != expected[i]) first_diff = i;
      CHECK(first_diff == ids.size());
    }
  }
}
