// `moeq compare MODEL --recipes A.yaml B.yaml ... | --formats nvfp4,fp8,... -o REPORT_DIR`
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "compare/compare.h"
#include "compare/compare_report.h"

namespace moeq::cli {
namespace {

// `--recipes` takes every following argument up to the next option; Args takes one value
// per option, so rewrite it as repeated --recipe. Comma lists work for both flags.
std::vector<std::string> expand_recipes(const std::vector<std::string>& argv) {
  std::vector<std::string> out;
  for (size_t i = 0; i < argv.size(); ++i) {
    if (argv[i] != "--recipes") {
      out.push_back(argv[i]);
      continue;
    }
    size_t n = 0;
    while (i + 1 < argv.size() && argv[i + 1].rfind("-", 0) != 0) {
      out.push_back("--recipe");
      out.push_back(argv[++i]);
      ++n;
    }
    if (n == 0) throw Error("option --recipes needs at least one recipe file");
  }
  return out;
}

std::vector<std::string> split_commas(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const auto& v : values) {
    size_t start = 0;
    while (start <= v.size()) {
      size_t end = v.find(',', start);
      if (end == std::string::npos) end = v.size();
      if (end > start) out.push_back(v.substr(start, end - start));
      start = end + 1;
    }
  }
  return out;
}

}  // namespace

int cmd_compare(const std::vector<std::string>& argv) {
  const std::string usage = "moeq compare MODEL_DIR (--recipes R1.yaml R2.yaml ... | --formats nvfp4,fp8,...) -o REPORT_DIR "
                            "[--device cpu|cuda] [--worst N] [--within-db DB]";
  Args args(expand_recipes(argv), {}, {"recipe", "formats", "o", "out", "device", "worst", "within-db", "calib", "eval"});
  args.expect_positional(1, usage);
  if (args.has("calib") || args.has("eval"))
    throw Error(std::string("--") + (args.has("calib") ? "calib" : "eval") +
                ": output-error metrics (KL, top-1, perplexity, logit cosine) need moeq's native forward pass, which "
                "is not built yet; run without --calib/--eval for the weight-error comparison");
  CompareOptions o;
  o.model = args.positional()[0];
  o.recipes = split_commas(args.all("recipe"));
  o.formats = split_commas(args.all("formats"));
  o.device = args.get("device", "cpu");
  const std::string out = args.get("o", args.get("out"));
  if (out.empty() || (o.recipes.empty() && o.formats.empty())) throw Error("usage: " + usage);
  try {
    o.worst_experts = std::stoi(args.get("worst", "10"));
    o.within_db = std::stod(args.get("within-db", "3"));
  } catch (const std::exception&) {
    throw Error("--worst takes a whole number and --within-db a number of dB");
  }
  if (o.worst_experts < 0 || o.within_db < 0) throw Error("--worst and --within-db must not be negative");
  const CompareResult r = run_compare(o);
  write_compare_report(out, r, o.within_db);
  const Pick pick = pick_variant(r, o.within_db);
  for (const auto& v : r.variants)
    std::printf("%-24s %10.2f MiB  %6.3f bits/weight  mean SQNR %7.2f dB\n", v.name.c_str(),
                static_cast<double>(v.expected_bytes) / (1024.0 * 1024.0), v.bits_per_weight, headline_sqnr(v));
  if (pick.chosen >= 0) std::printf("pick (within %.1f dB of the best): %s\n", o.within_db, r.variants[pick.chosen].name.c_str());
  std::printf("report: %s/report.md, %s/report.html\n", out.c_str(), out.c_str());
  return 0;
}

}  // namespace moeq::cli
