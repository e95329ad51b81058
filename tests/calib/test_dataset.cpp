// Calibration data loading: every input format, packing with BOS/EOS, the demo defaults, and
// errors that name the file and line. Text goes through a byte-level tokenizer whose ids are
// the bytes themselves (tokenizer_test_util.h), so every expected id is derived by hand.
#include <cstring>

#include "calib/data_readers.h"
#include "calib/dataset.h"
#include "calib/tokenizer/tokenizer.h"
#include "tests/calib/dataset_test_util.h"

using moeq::CalibDataSpec;
using moeq::load_calibration_tokens;
using moeq::test::model_dir;
using moeq::test::npy;
using moeq::test::Rows;
using moeq::test::rows_of;
using moeq::test::spec;
using moeq::test::TempDir;
using moeq::test::write_file;
using nlohmann::json;

namespace {
constexpr int64_t EOT = 256, IM_START = 257, IM_END = 258;
}  // namespace

TEST_CASE("JSONL text documents: tokenized, EOS after each, packed in order", "[dataset]") {
  if (!moeq::Tokenizer::available()) SKIP("built without PCRE2/utf8proc");
  TempDir d;
  const auto dir = model_dir(d, true);
  write_file(d.path + "/data.jsonl", "{\"text\": \"hi\"}\n\n{\"text\": \"ok!\", \"source\": \"x\"}\n{\"text\": \"zz\"}\n");
  const auto t = load_calibration_tokens(spec(d.path + "/data.jsonl", dir, 2, 3));
  CHECK(rows_of(t.ids) == Rows{{'h', 'i', EOT}, {'o', 'k', '!'}});
  CHECK_THAT(t.description, Catch::Matchers::ContainsSubstring("JSONL"));
  CHECK_THAT(t.description, Catch::Matchers::ContainsSubstring("stopped once enough"));
  CHECK_THAT(t.description, Catch::Matchers::ContainsSubstring("byte-level BPE"));
}

TEST_CASE("JSONL chat messages become ChatML text, special tokens included", "[dataset]") {
  if (!moeq::Tokenizer::available()) SKIP("built without PCRE2/utf8proc");
  TempDir d;
  const auto dir = model_dir(d, true);
  write_file(d.path + "/chat.jsonl",
             R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "text", "text": "yo"}]}]})"
             "\n");
  const auto t = load_calibration_tokens(spec(d.path + "/chat.jsonl", dir, 1, 24));
  CHECK(rows_of(t.ids) == Rows{{IM_START, 'u', 's', 'e', 'r', '\n', 'h', 'i', IM_END, '\n', IM_START, 'a', 's', 's', 'i', 's', 't', 'a', 'n',
                                't', '\n', 'y', 'o', IM_END}});
  CHECK_THAT(t.description, Catch::Matchers::ContainsSubstring("ChatML"));
  CHECK_THAT(t.description, Catch::Matchers::ContainsSubstring("not through the model's Jinja chat template"));
}

TEST_CASE("JSONL of ids / input_ids, taken as they are", "[dataset]") {
  TempDir d;
  const auto dir = model_dir(d, false);
  write_file(d.path + "/ids.jsonl", "{\"input_ids\": [1, 2, 3]}\n{\"ids\": [4, 5]}\n{\"ids\": [6]}\n");
  const auto t = load_calibration_tokens(spec(d.path + "/ids.jsonl", dir, 3, 2));
  CHECK(rows_of(t.ids) == Rows{{1, 2}, {3, 4}, {5, 6}});
  CHECK_THAT(t.description, Catch::Matchers::ContainsSubstring("3 pre-tokenized documents"));
}

TEST_CASE("plain text is one document", "[dataset]") {
  if (!moeq::Tokenizer::available()) SKIP("built without PCRE2/utf8proc");
  TempDir d;
  const auto dir = model_dir(d, true);
  write_file(d.path + "/data.txt", "ab\ncd");
  const auto t = load_calibration_tokens(spec(d.path + "/data.txt", dir, 2, 3));
  CHECK(rows_of(t.ids) == Rows{{'a', 'b', '\n'}, {'c', 'd', EOT}});
  CHECK_THAT(t.description, Catch::Matchers::ContainsSubstring("plain text"));
}

TEST_CASE(".npy ids: int32, int64, uint16, any shape", "[dataset]") {
  TempDir d;
  const auto dir = model_dir(d, false);
  const int32_t a32[6] = {5, 6, 7, 8, 9, 10};
  write_file(d.path + "/a.npy", npy("<i4", "(2, 3)", a32, sizeof a32));
  CHECK(rows_of(load_calibration_tokens(spec(d.path + "/a.npy", dir, 3, 2)).ids) == Rows{{5, 6}, {7, 8}, {9, 10}});
  const int64_t a64[4] = {1, 299, 0, 3};
  write_file(d.path + "/b.npy", npy("<i8", "(4,)", a64, sizeof a64));
  CHECK(rows_of(load_calibration_tokens(spec(d.path + "/b.npy", dir, 1, 4)).ids) == Rows{{1, 299, 0, 3}});
  const uint16_t a16[2] = {65535 % 300, 7};
  write_file(d.path + "/c.npy", npy("<u2", "(2,)", a16, sizeof a16));
  CHECK(rows_of(load_calibration_tokens(spec(d.path + "/c.npy", dir, 1, 2)).ids) == Rows{{65535 % 300, 7}});

  const float f[2] = {1, 2};
  write_file(d.path + "/f.npy", npy("<f4", "(2,)", f, sizeof f));
  REQUIRE_ERROR_MENTIONS(load_calibration_tokens(spec(d.path + "/f.npy", dir, 1, 2)), "f.npy", "<f4", "integer");
  write_file(d.path + "/o.npy", npy("<i4", "(2, 3)", a32, sizeof a32, true));
  REQUIRE_ERROR_MENTIONS(load_calibration_tokens(spec(d.path + "/o.npy", dir, 1, 2)), "o.npy", "Fortran");
  write_file(d.path + "/t.npy", npy("<i4", "(7,)", a32, sizeof a32));
  REQUIRE_ERROR_MENTIONS(load_calibration_tokens(spec(d.path + "/t.npy", dir, 1, 2)), "t.npy", "need 28");
  const int64_t big[2] = {1, 300};  // vocab_size is 300
  write_file(d.path + "/v.npy", npy("<i8", "(2,)", big, sizeof big));
  REQUIRE_ERROR_MENTIONS(load_calibration_tokens(spec(d.path + "/v.npy", dir, 1, 2)), "v.npy", "300", "position 1", "vocabulary");
}

TEST_CASE("too few tokens: the error says how many there are", "[dataset]") {
  TempDir d;
  const auto dir = model_dir(d, false);
  write_file(d.path + "/ids.jsonl", "{\"ids\": [1, 2, 3]}\n{\"ids\": [4, 5]}\n");
  REQUIRE_ERROR_MENTIONS(load_calibration_tokens(spec(d.path + "/ids.jsonl", dir, 2, 3)), "ids.jsonl", "holds 5 tokens",
                         "2 documents", "2 x 3 = 6");
  REQUIRE_ERROR_MENTIONS(load_calibration_tokens(spec(d.path + "/ids.jsonl", dir, 0, 3)), "samples", "positive");
}

TEST_CASE("data errors name the file and line", "[dataset]") {
  TempDir d;
  const auto dir = model_dir(d, true);
  write_file(d.path + "/bad.jsonl", "{\"ids\": [1]}\n{\"ids\": [1,]\n");
  REQUIRE_ERROR_MENTIONS(load_calibration_tokens(spec(d.path + "/bad.jsonl", dir, 1, 5)), "bad.jsonl:2", "not valid JSON");
  write_file(d.path + "/field.jsonl", "{\"ids\": [1]}\n{\"content\": \"x\"}\n");
  REQUIRE_ERROR_MENTIONS(load_calibration_tokens(spec(d.path + "/field.jsonl", dir, 1, 5)), "field.jsonl:2", "'text'", "'messages'");
  write_file(d.path + "/float.jsonl", "{\"ids\": [1, 2.5]}\n");
  REQUIRE_ERROR_MENTIONS(load_calibration_tokens(spec(d.path + "/float.jsonl", dir, 1, 1)), "float.jsonl:1", "element 1");
  write_file(d.path + "/utf8.jsonl", "{\"ids\": [1]}\n{\"ids\": [2]}\n{\"text\": \"ab\xC3(\"}\n");
  REQUIRE_ERROR_MENTIONS(load_calibration_tokens(spec(d.path + "/utf8.jsonl", dir, 1, 9)), "utf8.jsonl:3", "invalid UTF-8", "byte 13");
  write_file(d.path + "/utf8.txt", "fine\nab\xFF\n");
  REQUIRE_ERROR_MENTIONS(load_calibration_tokens(spec(d.path + "/utf8.txt", dir, 1, 1)), "utf8.txt", "invalid UTF-8",
                         "byte offset 7", "line 2, column 3");
  write_file(d.path + "/msg.jsonl", "{\"messages\": [{\"content\": \"x\"}]}\n");
  REQUIRE_ERROR_MENTIONS(load_calibration_tokens(spec(d.path + "/msg.jsonl", dir, 1, 1)), "msg.jsonl:1", "messages[0]", "role");
  REQUIRE_ERROR_MENTIONS(load_calibration_tokens(spec(d.path + "/none.jsonl", dir, 1, 1)), "none.jsonl", "does not exist");
}

TEST_CASE("text without tokenizer.json: the error says pre-tokenized ids work", "[dataset]") {
  TempDir d;
  const auto dir = model_dir(d, false);
  write_file(d.path + "/data.txt", "hello");
  REQUIRE_ERROR_MENTIONS(load_calibration_tokens(spec(d.path + "/data.txt", dir, 1, 1)), "tokenizer.json", "pre-tokenized");
}

TEST_CASE("no data path: demo corpus through the tokenizer, or synthetic ids without one", "[dataset]") {
  TempDir d;
  const auto dir = model_dir(d, false, 1000);
  const auto a = load_calibration_tokens(spec("", dir, 4, 64));
  const auto b = load_calibration_tokens(spec("", dir, 4, 64));
  CHECK(at::equal(a.ids, b.ids));  // deterministic
  CHECK(a.ids.min().item<int64_t>() >= 0);
  CHECK(a.ids.max().item<int64_t>() < 1000);
  CHECK(std::get<0>(at::_unique(a.ids.flatten())).size(0) > 200);  // not a constant
  CHECK_THAT(a.description, Catch::Matchers::ContainsSubstring("synthetic ids"));
  CHECK_THAT(a.description, Catch::Matchers::ContainsSubstring("no tokenizer.json"));
  if (!moeq::Tokenizer::available()) return;
  TempDir d2;
  const auto dir2 = model_dir(d2, true);
  const auto c = load_calibration_tokens(spec("", dir2, 8, 128));
  CHECK_THAT(c.description, Catch::Matchers::ContainsSubstring("embedded synthetic demo corpus"));
  // bytes of the corpus's text with EOS between documents
  const auto ids = c.ids.flatten();
  const auto first = moeq::calib_data::demo_document(0);
  for (size_t i = 0; i < std::min<size_t>(first.size(), 128); ++i) CHECK(ids[i].item<int64_t>() == static_cast<unsigned char>(first[i]));
  CHECK((ids == EOT).sum().item<int64_t>() >= 1);
}
