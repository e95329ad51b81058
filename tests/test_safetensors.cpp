// safetensors reader and writer: round trips, sharding, and clear errors on corrupt files.
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "io/atomic_dir.h"
#include "io/safetensors_writer.h"
#include "test_util.h"

using namespace moeq;
using moeq::test::TempDir;

namespace {

std::string u64le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}

// A file with the given JSON header and `data_bytes` zero bytes of data.
std::string make_file(const std::string& header, size_t data_bytes) {
  return u64le(header.size()) + header + std::string(data_bytes, '\0');
}

}  // namespace

TEST_CASE("safetensors: writer output reads back byte for byte, sharded with an index") {
  TempDir tmp;
  std::vector<TensorSpec> specs = {{"a", DType::BF16, {3, 4}}, {"b", DType::F32, {5}}, {"c", DType::U8, {7, 3}},
                                   {"d", DType::F8_E4M3, {16}}, {"e", DType::I64, {2}}, {"f", DType::I32, {0}}};
  std::vector<std::string> payload;
  for (size_t i = 0; i < specs.size(); ++i) {
    std::string bytes(specs[i].nbytes(), '\0');
    for (size_t k = 0; k < bytes.size(); ++k) bytes[k] = static_cast<char>(17 * i + 3 * k + 1);
    payload.push_back(bytes);
  }
  {
    SafetensorsWriter w(tmp.path, specs, /*max_shard_bytes=*/40, {{"format", "pt"}});
    for (size_t i = specs.size(); i-- > 0;) w.write(specs[i].name, payload[i].data(), payload[i].size());
    w.finish();
    REQUIRE(w.files().size() > 1);
  }
  REQUIRE(std::filesystem::exists(tmp.path + "/model.safetensors.index.json"));
  auto ck = Checkpoint::open(tmp.path);
  REQUIRE(ck->names().size() == specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorInfo& t = ck->info(specs[i].name);
    CHECK(t.dtype == specs[i].dtype);
    CHECK(t.shape == specs[i].shape);
    CHECK(std::memcmp(ck->data(specs[i].name), payload[i].data(), payload[i].size()) == 0);
  }
  const auto idx = nlohmann::json::parse(test::read_file(tmp.path + "/model.safetensors.index.json"));
  uint64_t total = 0;
  for (const auto& p : payload) total += p.size();
  CHECK(idx["metadata"]["total_size"].get<uint64_t>() == total);
  CHECK(ck->files()[0]->metadata().at("format") == "pt");
}

TEST_CASE("safetensors: writer refuses unplanned, repeated, wrongly sized and missing tensors") {
  TempDir tmp;
  SafetensorsWriter w(tmp.path, {{"x", DType::F32, {2}}, {"y", DType::F32, {1}}}, 1 << 20);
  float v[2] = {1, 2};
  REQUIRE_ERROR_MENTIONS(w.write("z", v, 8), "'z'", "not planned");
  REQUIRE_ERROR_MENTIONS(w.write("x", v, 4), "'x'", "planned 8");
  w.write("x", v, 8);
  REQUIRE_ERROR_MENTIONS(w.write("x", v, 8), "written twice");
  REQUIRE_ERROR_MENTIONS(w.finish(), "'y'", "never written");
}

TEST_CASE("safetensors: corrupt files give one-line errors naming file and tensor") {
  TempDir tmp;
  const std::string f = tmp.path + "/bad.safetensors";
  auto open_bad = [&](const std::string& bytes) {
    test::write_file(f, bytes);
    return SafetensorsFile::open(f);
  };
  const std::string good_hdr = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  REQUIRE_NOTHROW(open_bad(make_file(good_hdr, 16)));

  SECTION("empty and short files") {
    REQUIRE_ERROR_MENTIONS(open_bad(""), "bad.safetensors", "shorter than");
    REQUIRE_ERROR_MENTIONS(open_bad("abc"), "bad.safetensors", "shorter than");
  }
  SECTION("truncated data") { REQUIRE_ERROR_MENTIONS(open_bad(make_file(good_hdr, 15)), "bad.safetensors", "'w'", "truncated"); }
  SECTION("header length runs past the end") {
    REQUIRE_ERROR_MENTIONS(open_bad(u64le(1000) + "{}"), "bad.safetensors", "past the end");
    REQUIRE_ERROR_MENTIONS(open_bad(u64le(~0ull) + "{}"), "bad.safetensors", "implausibly large");
  }
  SECTION("bad JSON") {
    REQUIRE_ERROR_MENTIONS(open_bad(make_file("{\"w\":", 0)), "bad.safetensors", "not valid JSON");
    REQUIRE_ERROR_MENTIONS(open_bad(make_file("[1,2]", 0)), "not a JSON object");
  }
  SECTION("header lies about offsets") {
    REQUIRE_ERROR_MENTIONS(open_bad(make_file(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]}})", 16)),
                           "'w'", "past the data area");
    REQUIRE_ERROR_MENTIONS(open_bad(make_file(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[16,0]}})", 16)),
                           "'w'", "begin > end");
  }
  SECTION("shape x dtype disagrees with the byte span") {
    REQUIRE_ERROR_MENTIONS(open_bad(make_file(R"({"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,16]}})", 16)),
                           "'w'", "8 bytes but data_offsets span 16");
  }
  SECTION("overlapping tensors") {
    REQUIRE_ERROR_MENTIONS(
        open_bad(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12)),
        "'a'", "'b'", "overlap");
  }
  SECTION("unknown dtype and bad shapes") {
    REQUIRE_ERROR_MENTIONS(open_bad(make_file(R"({"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})", 16)),
                           "'w'", "unknown dtype 'F128'");
    REQUIRE_ERROR_MENTIONS(open_bad(make_file(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)),
                           "'w'", "non-negative");
    REQUIRE_ERROR_MENTIONS(
        open_bad(make_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4)),
        "'w'", "overflows");
  }
  SECTION("metadata must map strings to strings") {
    REQUIRE_ERROR_MENTIONS(open_bad(make_file(R"({"__metadata__":{"k":1}})", 0)), "__metadata__", "'k'");
  }
}

TEST_CASE("checkpoint: index pointing at a missing tensor or outside the directory is refused") {
  TempDir tmp;
  {
    SafetensorsWriter w(tmp.path, {{"x", DType::F32, {1}}}, 1 << 20);
    float v = 1;
    w.write("x", &v, 4);
    w.finish();
  }
  test::write_file(tmp.path + "/model.safetensors.index.json",
                   R"({"weight_map":{"x":"model.safetensors","ghost":"model.safetensors"}})");
  REQUIRE_ERROR_MENTIONS(Checkpoint::open(tmp.path), "index.json", "'ghost'");
  test::write_file(tmp.path + "/model.safetensors.index.json", R"({"weight_map":{"x":"../model.safetensors"}})");
  REQUIRE_ERROR_MENTIONS(Checkpoint::open(tmp.path), "outside the checkpoint");
  std::filesystem::remove(tmp.path + "/model.safetensors.index.json");
  REQUIRE(Checkpoint::open(tmp.path)->names().size() == 1);
  REQUIRE_ERROR_MENTIONS(Checkpoint::open(tmp.path + "/nope"), "nope", "not a checkpoint directory");
}

TEST_CASE("atomic output: nothing appears until commit, temporary removed on failure") {
  TempDir tmp;
  const std::string out = tmp.path + "/export";
  {
    AtomicDir d(out, false);
    test::write_file(d.path() + "/f", "x");
    REQUIRE_FALSE(std::filesystem::exists(out));
  }  // destroyed without commit
  REQUIRE_FALSE(std::filesystem::exists(out));
  REQUIRE(std::distance(std::filesystem::directory_iterator(tmp.path), {}) == 0);
  {
    AtomicDir d(out, false);
    test::write_file(d.path() + "/f", "x");
    d.commit();
  }
  REQUIRE(test::read_file(out + "/f") == "x");
  REQUIRE_ERROR_MENTIONS(AtomicDir(out, false), "already exists");
}
