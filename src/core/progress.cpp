#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

#include "core/format_util.h"

namespace moeq {

Progress::Progress(std::string what, uint64_t total_bytes)
    : what_(std::move(what)), total_(total_bytes ? total_bytes : 1), tty_(::isatty(2)),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

void Progress::advance(uint64_t bytes) {
  std::lock_guard<std::mutex> lk(mu_);
  done_ += bytes;
  draw(false);
}

void Progress::done() {
  std::lock_guard<std::mutex> lk(mu_);
  draw(true);
}

void Progress::draw(bool final) {
  const auto now = std::chrono::steady_clock::now();
  const double secs = std::chrono::duration<double>(now - start_).count();
  const double frac = std::min(1.0, static_cast<double>(done_) / total_);
  const double rate = secs > 0 ? done_ / secs : 0;
  const double eta = rate > 0 ? (total_ - std::min(done_, total_)) / rate : 0;
  if (tty_) {
    if (!final && std::chrono::duration<double>(now - last_draw_).count() < 0.1) return;
    last_draw_ = now;
    const int width = 30, fill = static_cast<int>(frac * width);
    std::fprintf(stderr, "\r%s [%.*s%*s] %5.1f%% %s/s ETA %.0fs   ", what_.c_str(), fill,
                 "##############################", width - fill, "", 100 * frac, human_bytes(static_cast<uint64_t>(rate)).c_str(), eta);
    if (final) std::fprintf(stderr, "\n");
  } else {
    const int decile = static_cast<int>(frac * 10);
    if (decile == last_decile_) return;
    last_decile_ = decile;
    std::fprintf(stderr, "%s: %3.0f%% (%s of %s, %s/s, ETA %.0fs)\n", what_.c_str(), 100 * frac,
                 human_bytes(done_).c_str(), human_bytes(total_).c_str(), human_bytes(static_cast<uint64_t>(rate)).c_str(), eta);
  }
}

}  // namespace moeq
