#pragma once
// The comparison report: report.json (everything), report.md (tables and the pick), and
// report.html (the same tables plus SVG charts; opens offline).
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "app/compare/compare.h"

namespace moeq {

// The tool's rule for "which to pick", applied to the numbers: among variants with a
// measured error, the smallest expected export whose mean SQNR over its quantized sites
// is within `within_db` of the best one. Also the Pareto front (no other variant is both
// at most as large and at least as accurate, one of them strictly).
//
// With the output error measured (--eval), the rule is on it instead: the smallest expected
// export whose mean KL(reference || quantized) per token is at most `max_kl` nats (the
// lowest-KL variant when none is); the Pareto front is then over size and KL, and the text
// also says what the weight rule would have picked.
struct Pick {
  double within_db = 3.0, max_kl = 0.01;
  bool by_output = false;  // the rule used the output error
  bool none_fits = false;  // by_output and no variant within max_kl: `chosen` is the lowest KL
  int best = -1, chosen = -1;  // variant indices, -1 when nothing was measured
  std::vector<int> pareto;     // by expected size, smallest first
  std::string text;            // the paragraph, with the numbers
};
Pick pick_variant(const CompareResult& r, double within_db, double max_kl = 0.01);

// Mean SQNR over the variant's quantized sites, NaN when it has none.
double headline_sqnr(const Variant& v);

// Table cells of the weight columns, the same in report.md and report.html. An activations-only
// row (--activations-only: no weight quantized) shows "source weights" for its formats and
// bits/weight and an em dash for its weight error; other rows without a value show "-".
std::string formats_cell(const Variant& v);
std::string weight_bits_cell(const Variant& v);
std::string no_weight_text(const Variant& v);

// What `moeq compare` prints per variant: one line with its size, weight error (an activations-only
// row: "source weights", no bits/weight or SQNR) and output error, and for an --exports row a second
// line counting the aux tensors taken from the export and those that differ from the source's.
std::string variant_lines(const Variant& v);

nlohmann::ordered_json compare_json(const CompareResult& r, const Pick& pick);
std::string compare_markdown(const CompareResult& r, const Pick& pick);
std::string compare_html(const CompareResult& r, const Pick& pick);

// Writes report.json, report.md and report.html into dir (created if missing).
void write_compare_report(const std::string& dir, const CompareResult& r, double within_db, double max_kl = 0.01);

// What was (or was not) measured about the output, said the same way in every output.
std::string output_error_note(const CompareResult& r);
// A KL value for tables: 5 decimals, scientific below 1e-3, "0" when exactly 0.
std::string kl_text(double v);

}  // namespace moeq
