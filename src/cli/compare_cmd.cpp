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
                            "[--device cpu|cuda] [--worst N] [--within-db DB] [--eval DATA [--eval-samples N] "
                            "[--eval-seq-len S] | --eval-ids IDS.safetensors] [--eval-dtype bfloat16|float32] "
                            "[--eval-chunk N] [--eval-ref-mib MIB] [--max-kl NATS] [--calib calib.h5]";
  Args args(expand_recipes(argv), {},
            {"recipe", "formats", "o", "out", "device", "worst", "within-db", "calib", "eval", "eval-ids", "eval-samples",
             "eval-seq-len", "eval-dtype", "eval-chunk", "eval-ref-mib", "max-kl"});
  args.expect_positional(1, usage);
  if (args.has("eval") && args.has("eval-ids")) throw Error("give --eval DATA or --eval-ids IDS.safetensors, not both");
  CompareOptions o;
  o.model = args.positional()[0];
  o.recipes = split_commas(args.all("recipe"));
  o.formats = split_commas(args.all("formats"));
  o.device = args.get("device", "cpu");
  const std::string out = args.get("o", args.get("out"));
  if (out.empty() || (o.recipes.empty() && o.formats.empty())) throw Error("usage: " + usage);
  o.calib = args.get("calib");
  o.eval_file = args.get("eval");
  o.eval_ids_file = args.get("eval-ids");
  o.eval_dtype = args.get("eval-dtype", o.eval_dtype);
  o.worst_experts = static_cast<int>(args.integer("worst", 10, 0));
  o.within_db = args.number("within-db", 3);
  o.max_kl = args.number("max-kl", 0.01);
  o.eval_samples = args.integer("eval-samples", o.eval_samples);
  o.eval_seq_len = args.integer("eval-seq-len", o.eval_seq_len);
  o.eval_chunk_samples = args.integer("eval-chunk", o.eval_chunk_samples);
  o.eval_ref_mib = args.integer("eval-ref-mib", o.eval_ref_mib);
  if (o.worst_experts < 0 || o.within_db < 0 || o.max_kl < 0) throw Error("--worst, --within-db and --max-kl must not be negative");
  if (o.eval_samples < 1 || o.eval_seq_len < 2 || o.eval_ref_mib < 1)
    throw Error("--eval-samples and --eval-ref-mib must be >= 1 and --eval-seq-len >= 2");
  const CompareResult r = run_compare(o);
  write_compare_report(out, r, o.within_db, o.max_kl);
  const Pick pick = pick_variant(r, o.within_db, o.max_kl);
  for (const auto& v : r.variants) {
    std::printf("%-32s %10.2f MiB  %6.3f bits/weight  mean SQNR %7.2f dB", v.name.c_str(),
                static_cast<double>(v.expected_bytes) / (1024.0 * 1024.0), v.bits_per_weight, headline_sqnr(v));
    if (v.output.measured)
      std::printf("  KL %s  top-1 %6.2f%%  ppl %.3f -> %.3f (%+.4f)  activations: %s", kl_text(v.output.kl_mean).c_str(),
                  100.0 * v.output.top1, v.output.ppl_ref, v.output.ppl_quant, v.output.ppl_delta, v.activations.c_str());
    std::printf("\n");
  }
  if (pick.chosen >= 0) {
    if (pick.by_output)
      std::printf("pick (smallest with mean KL <= %g nats): %s\n", o.max_kl, r.variants[pick.chosen].name.c_str());
    else
      std::printf("pick (within %.1f dB of the best): %s\n", o.within_db, r.variants[pick.chosen].name.c_str());
  }
  std::printf("report: %s/report.md, %s/report.html\n", out.c_str(), out.c_str());
  return 0;
}

}  // namespace moeq::cli
