#pragma once
// MOEQ_TIMING=1: where the native forward's time goes, per stage (weight loading, norms,
// attention, router, expert sort, expert GEMMs, combine, statistics, ...). Each stage boundary
// synchronises the device, so the stages do not overlap and the time of a stage is its own
// (nested stages are subtracted from the enclosing one); a timed run is slower than an untimed
// one. The table goes to stderr at the end of each MoeForward::run. Off (no syncs, no cost
// beyond one flag test) unless MOEQ_TIMING is set to something other than 0.
#include <ATen/ATen.h>

namespace moeq::fwd {

bool stage_timing_enabled();

// Accounts the time from construction to destruction to `stage` (a string literal).
class StageScope {
 public:
  StageScope(const char* stage, at::Device device);
  ~StageScope();
  StageScope(const StageScope&) = delete;
  StageScope& operator=(const StageScope&) = delete;

 private:
  bool on_;
  at::Device device_;
};

// Starts a new table (time outside any stage goes to "other").
void stage_timing_reset(at::Device device);
// Prints the table (seconds and share per stage) to stderr with `title`.
void stage_timing_report(const char* title, at::Device device);

}  // namespace moeq::fwd
