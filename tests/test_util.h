#pragma once
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"

namespace moeq::test {

// A fresh directory under the system temp dir, removed at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "moeq-test-XXXXXX").string();
    REQUIRE(::mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The directory of tiny transformers checkpoints (ctest fixture), or skip.
inline std::string tiny_dir() {
  const char* d = std::getenv("MOEQ_TINY_DIR");
  if (!d) SKIP("MOEQ_TINY_DIR not set (run through ctest)");
  return d;
}

}  // namespace moeq::test

// The call must throw moeq::Error whose message contains every given fragment.
#define REQUIRE_ERROR_MENTIONS(expr, ...)                                                  \
  do {                                                                                     \
    bool thrown_ = false;                                                                  \
    try {                                                                                  \
      (void)(expr);                                                                        \
    } catch (const ::moeq::Error& e_) {                                                    \
      thrown_ = true;                                                                      \
      const std::string msg_ = e_.what();                                                  \
      INFO("message: " << msg_);                                                           \
      for (const char* frag_ : {__VA_ARGS__}) CHECK_THAT(msg_, Catch::Matchers::ContainsSubstring(frag_)); \
      CHECK(msg_.find('\n') == std::string::npos);                                         \
    }                                                                                      \
    REQUIRE(thrown_);                                                                      \
  } while (0)

namespace moeq::test {
// The directory of reference-library fixtures written by tests/python/oracle_*.py, or skip.
inline std::string oracle_dir() {
  const char* d = std::getenv("MOEQ_ORACLE_DIR");
  if (!d) SKIP("MOEQ_ORACLE_DIR not set (run through ctest)");
  return d;
}
}  // namespace moeq::test
