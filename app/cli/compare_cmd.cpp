// `moeq compare MODEL --recipes A.yaml B.yaml ... | --formats nvfp4,fp8,... | --exports NAME=DIR ... -o REPORT_DIR`
#include <cstdio>

#include "app/cli/commands.h"
#include "app/cli/parser.h"
#include "app/compare/compare.h"
#include "app/compare/compare_report.h"
#include "core/error.h"

namespace moeq::cli {
namespace {

// Comma lists work for --recipes and --formats: "a.yaml,b.yaml" is two recipes.
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

// --exports NAME=DIR (or DIR: named after its folder).
std::vector<std::pair<std::string, std::string>> export_specs(const std::vector<std::string>& values) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& v : values) {
    const size_t eq = v.find('=');
    if (eq == 0 || eq + 1 == v.size()) throw UsageError("--exports " + v + ": give NAME=DIR (or DIR)");
    if (eq != std::string::npos) {
      out.emplace_back(v.substr(0, eq), v.substr(eq + 1));
      continue;
    }
    std::string dir = v;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    const size_t slash = dir.rfind('/');
    out.emplace_back(slash == std::string::npos ? dir : dir.substr(slash + 1), v);
  }
  return out;
}

}  // namespace

int cmd_compare(const std::vector<std::string>& argv) {
  CompareOptions o;
  std::string out;
  std::vector<std::string> recipes, recipe, formats, exports;
  Command c("compare",
            "Recipes, formats or existing exports (moeq's, ModelOpt's, llm-compressor's, bitsandbytes) side by side on one "
            "model: export size, weight error and, with --eval, output error",
            "MODEL_DIR (--recipes R1.yaml R2.yaml ... | --formats nvfp4,fp8,... | --exports NAME=DIR ...) -o REPORT_DIR [--device cpu|cuda] "
            "[--worst N] [--within-db DB] [--eval DATA [--eval-samples N] [--eval-seq-len S] | --eval-ids IDS.safetensors] "
            "[--eval-dtype bfloat16|float32] [--eval-chunk N] [--eval-ref-mib MIB] [--max-kl NATS] [--calib calib.h5 [--activations-only]]",
            "moeq compare demo/qwen3_moe_fused --formats nvfp4,fp8,int4 -o out/compare\n"
            "  moeq compare MODEL --exports moeq=out/nvfp4 modelopt=mo/max --eval-ids eval_ids.safetensors -o out/h2h");
  c.positional("MODEL_DIR", o.model, "Hugging Face checkpoint directory (config.json + safetensors)");
  c.option("--recipes", recipes, "recipe files (every argument up to the next option; comma lists too)")->expected(1, -1);
  c.alias("--recipe", recipe);
  c.option("--exports", exports,
           "existing exports of MODEL_DIR, NAME=DIR each (every argument up to the next option): decoded by moeq's verify "
           "readers (ModelOpt NVFP4/FP8, compressed-tensors NVFP4/INT4/FP8, bitsandbytes 4-bit) and run by the same "
           "forward with the export's own norms and biases (AWQ-folded ones included); W4A4 / W8A8 exports quantize "
           "activations with their own input scales")
      ->expected(1, -1);
  c.option("--formats", formats, "formats applied to every linear but routers, embeddings and lm_head (comma list, or all)");
  c.option("-o,--output", out, "directory for report.json, report.md and report.html")->required();
  c.alias("--out", out);
  c.option("--device", o.device, "where quantization and the eval forward run")->check(one_of({"cpu", "cuda"}));
  c.option("--worst", o.worst_experts, "worst experts listed per variant")->check(integer_at_least(0));
  c.option("--within-db", o.within_db, "weight pick: smallest export within this many dB of the best mean SQNR")
      ->check(non_negative_number());
  c.option("--eval", o.eval_file, "eval data, read as calibration data (through the model's tokenizer)");
  c.option("--eval-ids", o.eval_ids_file, "eval ids: a safetensors file with an int64 tensor ids [N, S]");
  c.option("--eval-samples", o.eval_samples, "eval samples (with --eval)")->check(integer_at_least(1));
  c.option("--eval-seq-len", o.eval_seq_len, "tokens per eval sample (with --eval)")->check(integer_at_least(2));
  c.option("--eval-dtype", o.eval_dtype, "compute dtype of the eval forward: bfloat16 or float32");
  c.option("--eval-chunk", o.eval_chunk_samples, "samples per forward call")->check(integer_at_least(1));
  c.option("--eval-ref-mib", o.eval_ref_mib, "host memory for the reference logits, MiB")->check(integer_at_least(1));
  c.option("--max-kl", o.max_kl, "output pick: smallest export with mean KL at most this, nats")->check(non_negative_number());
  c.option("--calib", o.calib, "calib.h5 of this model: activations of W4A4 / W8A8 variants quantized in the eval forward");
  c.flag("--activations-only", o.activations_only,
         "with --calib and eval: each W4A4 / W8A8 recipe also gets a row with its activations quantized and every weight "
         "at source precision (what the activations alone cost)");
  if (!c.parse(argv)) return 0;
  if (!o.eval_file.empty() && !o.eval_ids_file.empty()) c.fail("give --eval DATA or --eval-ids IDS.safetensors, not both");
  recipes.insert(recipes.end(), recipe.begin(), recipe.end());
  o.recipes = split_commas(recipes);
  o.formats = split_commas(formats);
  o.exports = export_specs(exports);
  if (o.recipes.empty() && o.formats.empty() && o.exports.empty()) c.fail("give --recipes, --formats or --exports");
  const CompareResult r = run_compare(o);
  write_compare_report(out, r, o.within_db, o.max_kl);
  const Pick pick = pick_variant(r, o.within_db, o.max_kl);
  for (const auto& v : r.variants) std::printf("%s", variant_lines(v).c_str());
  if (pick.chosen >= 0) {
    if (pick.by_output && pick.none_fits)
      std::printf("pick: no variant has mean KL <= %g nats; the lowest KL: %s (raise --max-kl or try larger formats)\n",
                  o.max_kl, r.variants[pick.chosen].name.c_str());
    else if (pick.by_output)
      std::printf("pick (smallest with mean KL <= %g nats): %s\n", o.max_kl, r.variants[pick.chosen].name.c_str());
    else
      std::printf("pick (within %.1f dB of the best): %s\n", o.within_db, r.variants[pick.chosen].name.c_str());
  }
  std::printf("report: %s/report.md, %s/report.html\n", out.c_str(), out.c_str());
  return 0;
}

}  // namespace moeq::cli
