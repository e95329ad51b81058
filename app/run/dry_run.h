#pragma once
// `moeq quantize --dry-run`: the plan, printed, with nothing written. One line per site (its
// format and parameters, or why it stays as stored), its bytes before and after, and the totals.
// Bytes after are each format's bits per weight (scales included) times the site's weights,
// rounded up to whole bytes: the estimate `moeq compare` uses; auxiliary tensors (norms,
// biases, routers' extras) and unclaimed ones are copied as stored.
#include <cstdint>
#include <cstdio>
#include <string>

#include "io/checkpoint.h"
#include "recipe/recipe.h"

namespace moeq {

struct PlanTotals {
  size_t sites = 0, quantized = 0;
  uint64_t site_bytes_before = 0, site_bytes_after = 0;
  uint64_t source_bytes = 0, export_bytes = 0;  // the whole checkpoint, before and (estimated) after
};

// Prints the plan to `to` and returns its totals.
PlanTotals print_plan(FILE* to, const Plan& plan, const Checkpoint& ck, const std::string& export_format);

}  // namespace moeq
