// `moeq quantize MODEL --recipe R.yaml -o OUT [--calib CALIB.h5] [--device cpu|cuda] [--dry-run]`
#include "app/cli/commands.h"
#include "app/cli/parser.h"
#include "app/run/quantize.h"

namespace moeq::cli {

int cmd_quantize(const std::vector<std::string>& argv) {
  QuantizeOptions o;
  double shard_gb = static_cast<double>(o.max_shard_bytes) / (1ull << 30);
  Command c("quantize", "Quantize a checkpoint by a recipe and write the export with its report",
            "MODEL_DIR --recipe R.yaml -o OUT_DIR [--calib CALIB.h5] [--device cpu|cuda] [--weight-only] [--dry-run] "
            "[--overwrite] [--strict] [--max-shard-gb N]",
            "moeq quantize demo/qwen3_moe_fused --recipe recipes/nvfp4_experts_only.yaml --weight-only -o out/nvfp4");
  c.positional("MODEL_DIR", o.model, "Hugging Face checkpoint directory (config.json + safetensors)");
  c.option("--recipe", o.recipe, "quantization recipe (YAML, recipes/*.yaml)")->required();
  c.option("-o,--output", o.out, "export directory to write (written as OUT_DIR.tmp-*, renamed on success)")->required();
  c.alias("--out", o.out);
  c.option("--calib", o.calib, "calib.h5 from moeq calibrate: input scales for recipes that quantize activations");
  c.option("--device", o.device, "where the quantization kernels run")->check(one_of({"cpu", "cuda"}));
  c.flag("--weight-only", o.weight_only, "no activation quantization, whatever the recipe says (no --calib needed)");
  c.flag("--dry-run", o.dry_run, "print the plan (every site: format or why skipped, bytes before and after) and write nothing");
  c.flag("--overwrite", o.overwrite, "replace OUT_DIR if it exists");
  c.flag("--strict", o.strict, "recipe warnings and unclaimed tensors are errors");
  c.option("--max-shard-gb", shard_gb, "largest safetensors shard of the export, GiB")->check(non_negative_number());
  c.alias("--dump-dequant", o.dump_dequant);  // testing aid: moeq's dequantization of every site
  if (!c.parse(argv)) return 0;
  if (c.given("--max-shard-gb")) o.max_shard_bytes = static_cast<uint64_t>(shard_gb * (1ull << 30));
  quantize_checkpoint(o);
  return 0;
}

}  // namespace moeq::cli
