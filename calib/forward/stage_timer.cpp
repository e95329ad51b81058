#include "calib/forward/stage_timer.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "formats/cuda_stream.h"

namespace moeq::fwd {
namespace {
using Clock = std::chrono::steady_clock;

struct Table {
  std::map<std::string, double> seconds;
  std::vector<std::string> order;  // first-seen order, for the report
  std::vector<const char*> stack;  // open stages, innermost last
  Clock::time_point last = Clock::now();
  // Adds the time since the last boundary to the innermost open stage.
  void charge() {
    const Clock::time_point now = Clock::now();
    const std::string name = stack.empty() ? "other" : stack.back();
    if (!seconds.count(name)) order.push_back(name);
    seconds[name] += std::chrono::duration<double>(now - last).count();
    last = now;
  }
};
Table& table() {
  static Table t;
  return t;
}
void sync(at::Device d) {
  if (d.is_cuda()) cuda_synchronize();
}
}  // namespace

bool stage_timing_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("MOEQ_TIMING");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return on;
}

StageScope::StageScope(const char* stage, at::Device device) : on_(stage_timing_enabled()), device_(device) {
  if (!on_) return;
  sync(device_);
  table().charge();
  table().stack.push_back(stage);
}

StageScope::~StageScope() {
  if (!on_) return;
  sync(device_);
  table().charge();
  table().stack.pop_back();
}

void stage_timing_reset(at::Device device) {
  if (!stage_timing_enabled()) return;
  sync(device);
  table() = Table{};
}

void stage_timing_report(const char* title, at::Device device) {
  if (!stage_timing_enabled()) return;
  sync(device);
  Table& t = table();
  t.charge();
  double total = 0;
  for (const auto& kv : t.seconds) total += kv.second;
  std::fprintf(stderr, "[timing] %s: %.3f s (MOEQ_TIMING: device synchronised at every stage boundary)\n", title, total);
  for (const auto& name : t.order)
    std::fprintf(stderr, "[timing]   %-22s %8.3f s  %5.1f%%\n", name.c_str(), t.seconds[name],
                 total > 0 ? 100.0 * t.seconds[name] / total : 0.0);
}

}  // namespace moeq::fwd
