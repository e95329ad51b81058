// A deterministic stand-in for the fuzzer that runs in every CI build: thousands of
// mutations (bit flips, truncations, splices, length-field edits) of valid files must each
// parse or fail with moeq::Error, never crash or read out of bounds.
#include <random>
#include <string>
#include <vector>

#include "fuzz/fuzz_body.h"
#include "test_util.h"

namespace {
std::string u64le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}
std::string file(const std::string& h, size_t n) { return u64le(h.size()) + h + std::string(n, '\x5a'); }
}  // namespace

TEST_CASE("fuzz replay: mutated safetensors files never crash the parser") {
  const std::vector<std::string> seeds = {
      file(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", 16),
      file(R"({"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"U8","shape":[2,1],"data_offsets":[6,8]}})", 8),
      file(R"({"e":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"z":{"dtype":"F8_E4M3","shape":[0],"data_offsets":[8,8]}})", 8),
  };
  std::mt19937_64 rng(12345);
  int ok = 0, rejected = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string s = seeds[rng() % seeds.size()];
    const int edits = 1 + rng() % 4;
    for (int k = 0; k < edits && !s.empty(); ++k) {
      switch (rng() % 6) {
        case 0: s[rng() % s.size()] ^= static_cast<char>(1u << (rng() % 8)); break;
        case 1: s.resize(rng() % s.size()); break;
        case 2: s[rng() % s.size()] = "0123456789[]{}\":,-e"[rng() % 19]; break;
        case 3: s.insert(rng() % s.size(), std::string(1 + rng() % 8, static_cast<char>(rng()))); break;
        case 4: {  // lie about the header length
          const std::string len = u64le(rng() % 512);
          s.replace(0, std::min<size_t>(8, s.size()), len);
          break;
        }
        case 5: s.erase(rng() % s.size(), 1 + rng() % 4); break;
      }
    }
    // Copy into an exact-size heap buffer so an over-read is caught by sanitizers/valgrind.
    std::vector<uint8_t> buf(s.begin(), s.end());
    (moeq::fuzz::parse_one(buf.data(), buf.size()) >= 0 ? ok : rejected)++;
  }
  INFO("parsed " << ok << ", rejected " << rejected);
  CHECK(ok > 100);
  CHECK(rejected > 1000);
}
