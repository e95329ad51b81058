// `moeq quantize MODEL --recipe R.yaml -o OUT [--calib CALIB.h5] [--device cpu|cuda]`
#include "cli/args.h"
#include "cli/commands.h"
#include "quant/quantize.h"

namespace moeq::cli {

int cmd_quantize(const std::vector<std::string>& argv) {
  Args args(argv, {"overwrite", "strict", "weight-only"}, {"recipe", "o", "out", "calib", "device", "max-shard-gb", "dump-dequant"});
  const std::string usage = "moeq quantize MODEL_DIR --recipe R.yaml -o OUT_DIR [--calib CALIB.h5] [--device cpu|cuda] "
                            "[--weight-only] [--overwrite] [--strict] [--max-shard-gb N]";
  args.expect_positional(1, usage);
  QuantizeOptions o;
  o.model = args.positional()[0];
  o.recipe = args.get("recipe");
  o.out = args.get("o", args.get("out"));
  if (o.recipe.empty() || o.out.empty()) throw Error("usage: " + usage);
  o.calib = args.get("calib");
  o.device = args.get("device", "cpu");
  o.overwrite = args.flag("overwrite");
  o.strict = args.flag("strict");
  o.weight_only = args.flag("weight-only");
  if (args.has("max-shard-gb")) o.max_shard_bytes = static_cast<uint64_t>(args.number("max-shard-gb", 0) * (1ull << 30));
  o.dump_dequant = args.get("dump-dequant");  // testing aid, not in the usage line
  quantize_checkpoint(o);
  return 0;
}

}  // namespace moeq::cli
