#pragma once
#include <cstdint>
// Progress for long work: a bar with rate and ETA on a terminal, plain lines (every 10%)
// otherwise, on stderr. advance() and done() may be called from several threads.
#include <chrono>
#include <mutex>
#include <string>

namespace moeq {

class Progress {
 public:
  Progress(std::string what, uint64_t total_bytes);
  void advance(uint64_t bytes);
  void done();

 private:
  void draw(bool final);
  std::string what_;
  uint64_t total_, done_ = 0;
  int last_decile_ = -1;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::mutex mu_;
};

}  // namespace moeq
