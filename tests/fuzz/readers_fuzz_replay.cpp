// Deterministic stand-ins for the libFuzzer targets fuzz_recipe, fuzz_calib_h5, fuzz_npy,
// fuzz_jsonl and fuzz_tokenizer, run in every CI build: mutations of valid inputs (seeded, so
// every run is the same) must each parse or fail with a one-line moeq::Error, never crash, hang
// or throw anything else. Bounded: a few seconds per reader.
#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "calib/dataset_test_util.h"
#include "calib/tokenizer_test_util.h"
#include "fuzz/mutate.h"
#include "fuzz/calib_h5_body.h"
#include "fuzz/jsonl_body.h"
#include "fuzz/npy_body.h"
#include "fuzz/recipe_body.h"
#include "fuzz/tokenizer_body.h"
#include "test_util.h"

using namespace moeq;
using nlohmann::json;

namespace {

struct Counts {
  int ok = 0, rejected = 0, iterations = 0;
};

// Runs `body` on mutations of `seeds` for `iterations` or `seconds`, whichever ends first.
template <class Body>
Counts replay(const std::vector<std::string>& seeds, uint64_t seed, int iterations, double seconds, Body body) {
  std::mt19937_64 rng(seed);
  Counts c;
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& s : seeds) {  // the seeds themselves first: they must parse
    const std::vector<uint8_t> buf(s.begin(), s.end());
    (body(buf.data(), buf.size()) >= 0 ? c.ok : c.rejected)++;
  }
  for (; c.iterations < iterations; ++c.iterations) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > seconds) break;
    const std::string s = fuzz::mutate(seeds, rng);
    const std::vector<uint8_t> buf(s.begin(), s.end());  // exact size: an over-read shows under sanitizers
    (body(buf.data(), buf.size()) >= 0 ? c.ok : c.rejected)++;
  }
  return c;
}

std::vector<std::string> recipe_seeds() {
  std::vector<std::string> s;
  for (const char* r : {"nvfp4_experts_only", "fp8", "nf4_all", "w4a16_int4", "nvfp4_experts_only_mse", "mxfp4_experts"})
    s.push_back(test::read_file(std::string(MOEQ_SOURCE_DIR) + "/recipes/" + r + ".yaml"));
  s.push_back("recipe: x\nexport: compressed-tensors\nrules:\n  - sites: \"re:layers\\\\.[0-9]+\\\\.experts\\\\..*\"\n"
              "    format: int4\n    params: {block_size: 32, symmetric: false}\n  - roles: [attention, router]\n    enable: false\n");
  s.push_back("quant_cfg:\n  \"*weight_quantizer\": {num_bits: [2, 1], block_sizes: {-1: 16, type: dynamic, scale_bits: [4, 3]}}\n"
              "  \"*input_quantizer\": {enable: false}\n  \"*router*\": {enable: false}\n");
  return s;
}

std::string calib_h5_seed(const std::string& dir) {
  CalibData d;
  d.model_fingerprint = "0123456789abcdef";
  d.model_summary = "qwen3_moe, 1 layer";
  d.data_description = "fuzz seed";
  d.samples = 2;
  d.seq_len = 4;
  d.tokens = 8;
  d.sites.push_back({"layers.0.attention.q", "model.layers.0.self_attn.q_proj", 0, -1, 3.5f, false, {1.5f, 3.5f}});
  d.sites.push_back({"layers.0.experts.1.down", "model.layers.0.mlp.experts.1.down_proj", 0, 1, 2.0f, true, {}});
  d.layers.push_back({0, {5, 0}, {5, 0}, {2.5f, 0.f}});
  d.unobserved = {"lm_head"};
  write_calib_file(dir + "/seed.h5", d);
  return test::read_file(dir + "/seed.h5");
}

std::vector<std::string> npy_seeds() {
  const int32_t a32[6] = {5, 6, 7, 8, 9, 10};
  const int64_t a64[4] = {1, 2, 3, 4};
  const uint16_t a16[3] = {65535, 0, 7};
  std::string v2 = test::npy("<i4", "(3, 2)", a32, sizeof a32);
  v2[6] = '\x02';  // version 2: a 4-byte header length
  v2.insert(10, std::string(2, '\0'));
  return {test::npy("<i4", "(2, 3)", a32, sizeof a32), test::npy("<i8", "(4,)", a64, sizeof a64),
          test::npy("<u2", "(3,)", a16, sizeof a16), test::npy("<i4", "(3, 2)", a32, sizeof a32, true), v2};
}

std::vector<std::string> jsonl_seeds() {
  return {"{\"text\": \"Hello world, the quick brown fox.\"}\n{\"text\": \"caf\xc3\xa9 \xe4\xb8\xad\"}\n",
          "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": [{\"type\": "
          "\"text\", \"text\": \"hello\"}]}]}\n",
          "{\"ids\": [1, 2, 3, 4, 5]}\n{\"input_ids\": [7, 8, 9, 10]}\n", "\n  \n{\"text\": \"a\"}\r\n{\"text\": \"b c d e\"}\n"};
}

std::vector<json> tokenizer_variants() {
  json byte = test::byte_tokenizer_json();
  json merged = byte;  // a few merges over the byte alphabet
  merged["model"]["vocab"]["he"] = 259;
  merged["model"]["vocab"]["ll"] = 260;
  merged["model"]["vocab"]["hell"] = 261;
  merged["model"]["merges"] = json::array({"h e", "l l", "he ll"});
  merged["normalizer"] = {{"type", "Sequence"},
                          {"normalizers", json::array({{{"type", "NFC"}}, {{"type", "Lowercase"}},
                                                       {{"type", "Replace"}, {"pattern", {{"String", "\t"}}}, {"content", " "}}})}};
  json sp = byte;  // SentencePiece style: Metaspace, byte fallback
  json vocab = json::object();
  vocab["<unk>"] = 0;
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    vocab[hex] = b + 1;
  }
  vocab["\xe2\x96\x81"] = 257;
  vocab["h"] = 258;
  sp["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}, {"byte_fallback", true}, {"unk_token", "<unk>"}};
  sp["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xe2\x96\x81"}, {"prepend_scheme", "first"}, {"split", false}};
  sp["added_tokens"] = json::array();
  sp["post_processor"] = nullptr;
  json split = byte;
  split["pre_tokenizer"] = {{"type", "Sequence"},
                            {"pretokenizers", json::array({{{"type", "Split"}, {"pattern", {{"Regex", "\\p{N}{1,3}"}}},
                                                            {"behavior", "Isolated"}, {"invert", false}},
                                                           {{"type", "ByteLevel"}, {"add_prefix_space", false},
                                                            {"trim_offsets", true}, {"use_regex", false}}})}};
  return {byte, merged, sp, split};
}

}  // namespace

TEST_CASE("fuzz replay: mutated recipes never crash the YAML reader", "[fuzz]") {
  const Counts c = replay(recipe_seeds(), 101, 6000, 4.0, fuzz::recipe_one);
  INFO("parsed " << c.ok << ", rejected " << c.rejected << " of " << c.iterations << " mutations");
  CHECK(c.ok > 8);
  CHECK(c.rejected > c.iterations / 10);
}

TEST_CASE("fuzz replay: mutated calib.h5 files never crash the reader", "[fuzz]") {
  test::TempDir d;
  const Counts c = replay({calib_h5_seed(d.path)}, 202, 3000, 4.0, fuzz::calib_h5_one);
  INFO("read " << c.ok << ", rejected " << c.rejected << " of " << c.iterations << " mutations");
  CHECK(c.ok >= 1);
  CHECK(c.rejected > c.iterations / 10);
}

TEST_CASE("fuzz replay: mutated .npy files never crash the ids reader", "[fuzz]") {
  const Counts c = replay(npy_seeds(), 303, 20000, 3.0, fuzz::npy_one);
  INFO("read " << c.ok << ", rejected " << c.rejected << " of " << c.iterations << " mutations");
  CHECK(c.ok >= 5);
  CHECK(c.rejected > c.iterations / 10);
}

TEST_CASE("fuzz replay: mutated JSONL calibration data never crashes the reader", "[fuzz]") {
  if (!Tokenizer::available()) SKIP("built without the native tokenizer");
  test::TempDir d;
  const std::string dir = test::model_dir(d, true);
  const Counts c = replay(jsonl_seeds(), 404, 6000, 4.0, [&](const uint8_t* p, size_t n) { return fuzz::jsonl_one(p, n, dir); });
  INFO("read " << c.ok << ", rejected " << c.rejected << " of " << c.iterations << " mutations");
  CHECK(c.ok >= 4);
  CHECK(c.rejected > c.iterations / 10);
}

TEST_CASE("fuzz replay: mutated tokenizer.json files and texts never crash the tokenizer", "[fuzz]") {
  if (!Tokenizer::available()) SKIP("built without the native tokenizer");
  std::vector<std::string> seeds;
  for (const auto& t : tokenizer_variants()) seeds.push_back(t.dump());
  const Counts load = replay(seeds, 505, 3000, 4.0, fuzz::tokenizer_load_one);
  INFO("tokenizer.json: loaded " << load.ok << ", rejected " << load.rejected << " of " << load.iterations);
  CHECK(load.ok >= static_cast<int>(seeds.size()));
  CHECK(load.rejected > load.iterations / 10);
  // Texts (valid and invalid UTF-8) through each seed tokenizer.
  const std::vector<std::string> texts = {"Hello world 1234567 caf\xc3\xa9", "<|im_start|>user\nhi<|im_end|><|endoftext|>",
                                          "\xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\t\t  x", std::string(300, 'l')};
  for (size_t k = 0; k < seeds.size(); ++k) {
    const std::string path = fuzz::write_scratch("seed_tokenizer.json", reinterpret_cast<const uint8_t*>(seeds[k].data()),
                                                 seeds[k].size());
    auto tok = Tokenizer::from_files(path, "");
    const Counts enc = replay(texts, 600 + k, 3000, 1.0,
                              [&](const uint8_t* p, size_t n) { return fuzz::tokenizer_encode_one(*tok, p, n); });
    INFO("tokenizer " << k << ": encoded " << enc.ok << ", rejected " << enc.rejected);
    CHECK(enc.ok > 0);
  }
}

// Found by fuzz_calib_h5: a dataset header declaring more elements than the file stores made
// the reader allocate them (std::bad_alloc, exit 3); now a moeq::Error naming the dataset.
TEST_CASE("fuzz finding: a calib.h5 dataset longer than its storage is refused by name", "[fuzz][calib]") {
  REQUIRE_ERROR_MENTIONS(read_calib_file(std::string(MOEQ_SOURCE_DIR) + "/tests/data/fuzz/calib_h5_huge_length.h5"),
                         "calib_h5_huge_length.h5", "declares", "a damaged file");
}
