#pragma once
// How well calibration covered the experts: tokens per expert per MoE layer (min, median,
// max, the experts that received none). Shared by `moeq calibrate`'s summary and the
// calibration section of the quantize report.
#include <cstdint>
#include <string>
#include <vector>

#include "calib/calib_file.h"

namespace moeq {

struct LayerCoverage {
  int64_t layer = -1;
  int64_t experts = 0;
  int64_t min = 0, median = 0, max = 0;  // tokens per expert
  std::vector<int64_t> zero_token_experts;
};

std::vector<LayerCoverage> expert_coverage(const CalibData& d);
// One line: "layer 3: 64 experts, tokens per expert min 0 / median 41 / max 310, 2 with none (5, 17)".
std::string coverage_line(const LayerCoverage& c);

}  // namespace moeq
