#pragma once
// Shared by the fuzz bodies (tests/fuzz/*_body.h): the fuzz input as a file for the readers
// that take a path, and the verdict on a moeq::Error. moeq::Error is the correct outcome for bad
// input; any other exception, crash, hang or sanitizer report is a bug.
// The bodies serve the libFuzzer targets (fuzz_*.cpp, -DMOEQ_FUZZ=ON) and the deterministic
// replays of every CI build (readers_fuzz_replay.cpp).
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"

namespace moeq::fuzz {

// A per-process scratch directory, made on first use and removed at exit.
inline const std::string& scratch_dir() {
  struct Dir {
    std::string path;
    Dir() {
      path = (std::filesystem::temp_directory_path() / "moeq-fuzz-XXXXXX").string();
      if (!::mkdtemp(path.data())) std::abort();
    }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Dir dir;
  return dir.path;
}

inline std::string write_scratch(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), size);
  return path;
}

// moeq::Error: -1. An empty message is a bug (abort, as a crash). Messages may quote the input,
// newlines included; the CLI prints them on one line (src/cli/exit_codes.cpp escapes them).
inline int rejected(const Error& e) {
  if (e.what()[0] == '\0') std::abort();
  return -1;
}

}  // namespace moeq::fuzz
