// `moeq make-demo OUT_DIR`: writes the embedded default checkpoints (both layouts).
#include <cstdio>
#include <filesystem>

#include "app/cli/commands.h"
#include "app/cli/parser.h"
#include "core/error.h"
#include "model/demo_checkpoint.h"

namespace moeq::cli {

int cmd_make_demo(const std::vector<std::string>& argv) {
  std::string out;
  bool overwrite = false;
  uint64_t seed = 1234;
  DemoShape shape;
  Command c("make-demo", "Write the embedded demo Qwen3-MoE checkpoint in both expert layouts (per-expert 2D and fused 3D)",
            "OUT_DIR [--overwrite] [--seed N] [--layers N] [--experts N]", "moeq make-demo demo");
  c.positional("OUT_DIR", out, "directory to write OUT_DIR/qwen3_moe_per_expert and OUT_DIR/qwen3_moe_fused into");
  c.flag("--overwrite", overwrite, "replace existing demo checkpoints");
  c.option("--seed", seed, "seed of the deterministic weights")->check(integer_at_least(0));
  c.option("--layers", shape.layers, "decoder layers")->check(integer_at_least(1));
  c.option("--experts", shape.experts, "routed experts per layer (>= top_k " + std::to_string(shape.top_k) + ")")
      ->check(integer_at_least(1));
  if (!c.parse(argv)) return 0;
  if (shape.experts < shape.top_k) c.fail("--experts must be >= " + std::to_string(shape.top_k) + " (top_k)");
  std::filesystem::create_directories(out);
  for (bool fused : {false, true}) {
    const std::string dir = out + (fused ? "/qwen3_moe_fused" : "/qwen3_moe_per_expert");
    write_demo_checkpoint(dir, fused, shape, seed, overwrite);
    std::printf("wrote %s (%s experts)\n", dir.c_str(), fused ? "fused 3D" : "per-expert 2D");
  }
  return 0;
}

}  // namespace moeq::cli
