#include "calib/coverage.h"

#include <algorithm>

namespace moeq {

std::vector<LayerCoverage> expert_coverage(const CalibData& d) {
  std::vector<LayerCoverage> out;
  for (const auto& l : d.layers) {
    if (l.tokens_per_expert.empty()) continue;
    LayerCoverage c;
    c.layer = l.layer;
    c.experts = static_cast<int64_t>(l.tokens_per_expert.size());
    std::vector<int64_t> t = l.tokens_per_expert;
    std::sort(t.begin(), t.end());
    c.min = t.front();
    c.max = t.back();
    c.median = t[t.size() / 2];  // upper median for even counts: a count that occurs
    for (size_t e = 0; e < l.tokens_per_expert.size(); ++e)
      if (l.tokens_per_expert[e] == 0) c.zero_token_experts.push_back(static_cast<int64_t>(e));
    out.push_back(std::move(c));
  }
  return out;
}

std::string coverage_line(const LayerCoverage& c) {
  std::string s = "layer " + std::to_string(c.layer) + ": " + std::to_string(c.experts) + " experts, tokens per expert min " +
                  std::to_string(c.min) + " / median " + std::to_string(c.median) + " / max " + std::to_string(c.max);
  if (c.zero_token_experts.empty()) return s + ", none without tokens";
  s += ", " + std::to_string(c.zero_token_experts.size()) + " with none (";
  for (size_t i = 0; i < c.zero_token_experts.size(); ++i) s += (i ? ", " : "") + std::to_string(c.zero_token_experts[i]);
  return s + ")";
}

}  // namespace moeq
