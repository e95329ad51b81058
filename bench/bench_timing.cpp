#include "bench/bench_timing.h"

#include <algorithm>
#include <chrono>
#include <sstream>

#include "app/cli/parser.h"
#include "formats/cuda_stream.h"

namespace moeq::cli {

double median_seconds(const std::function<void()>& fn, bool cuda, int iters) {
  fn();  // warm-up (allocator, module load)
  if (cuda) cuda_synchronize();
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    const auto a = std::chrono::steady_clock::now();
    fn();
    if (cuda) cuda_synchronize();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::vector<int64_t> parse_shape(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    size_t used = 0;
    long long n = 0;
    try {
      n = std::stoll(tok, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (tok.empty() || used != tok.size() || n < 1) used = 0;
    if (used == 0) throw UsageError("--shape wants E,out,in (e.g. 128,1408,2816), got '" + s + "'");
    out.push_back(n);
  }
  if (out.size() != 3) throw UsageError("--shape wants E,out,in (e.g. 128,1408,2816), got '" + s + "'");
  return out;
}

}  // namespace moeq::cli
