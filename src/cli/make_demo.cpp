// `moeq make-demo OUT_DIR`: writes the embedded default checkpoints (both layouts).
#include <cstdio>
#include <filesystem>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "model/demo_checkpoint.h"

namespace moeq::cli {

int cmd_make_demo(const std::vector<std::string>& argv) {
  Args args(argv, {"overwrite"}, {"seed", "layers", "experts"});
  args.expect_positional(1, "moeq make-demo OUT_DIR [--overwrite] [--seed N] [--layers N] [--experts N]");
  const std::string out = args.positional()[0];
  const uint64_t seed = std::stoull(args.get("seed", "1234"));
  std::filesystem::create_directories(out);
  DemoShape shape;
  shape.layers = args.integer("layers", shape.layers);
  shape.experts = args.integer("experts", shape.experts);
  if (shape.layers < 1 || shape.experts < shape.top_k)
    throw Error("make-demo: need --layers >= 1 and --experts >= " + std::to_string(shape.top_k) + " (top_k)");
  for (bool fused : {false, true}) {
    const std::string dir = out + (fused ? "/qwen3_moe_fused" : "/qwen3_moe_per_expert");
    write_demo_checkpoint(dir, fused, shape, seed, args.flag("overwrite"));
    std::printf("wrote %s (%s experts)\n", dir.c_str(), fused ? "fused 3D" : "per-expert 2D");
  }
  return 0;
}

}  // namespace moeq::cli
