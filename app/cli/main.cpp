// moeq: calibration and post-training quantization for Mixture-of-Experts checkpoints.
#include <cstdio>
#include <string>
#include <vector>

#include "app/cli/commands.h"
#include "app/cli/exit_codes.h"

namespace {

struct Command {
  const char* name;
  int (*run)(const std::vector<std::string>&);
  const char* help;
};

const Command kCommands[] = {
    {"inspect", moeq::cli::cmd_inspect, "architecture, plugin, expert layout, sites, bytes per role"},
    {"make-demo", moeq::cli::cmd_make_demo, "write the embedded demo MoE checkpoints (both expert layouts)"},
    {"calibrate", moeq::cli::cmd_calibrate, "activation statistics (input amax of every linear) into calib.h5"},
    {"quantize", moeq::cli::cmd_quantize, "quantize by a recipe and export (--dry-run: the plan only)"},
    {"verify", moeq::cli::cmd_verify, "check every expert weight and scale of an export"},
    {"report", moeq::cli::cmd_report, "print an export's skipped-layers report"},
    {"compare", moeq::cli::cmd_compare, "recipes or formats side by side: size, weight error, output error"},
    {"bench", moeq::cli::cmd_bench, "formats: kernel vs torch-op throughput; calibrate: forward vs forward + statistics; source: decode + nvfp4 GB/s"},
};

void usage(FILE* to) {
  std::fprintf(to, "usage: moeq COMMAND [ARGS]   (moeq COMMAND --help: its options, defaults and an example)\n\ncommands:\n");
  for (const auto& c : kCommands) std::fprintf(to, "  %-10s %s\n", c.name, c.help);
  std::fprintf(to, "\nexit codes: 0 ok, 1 user error (bad input, refused), 2 usage, 3 internal error\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? moeq::cli::kExitUsage : moeq::cli::kExitOk;
  }
  const std::string name = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& c : kCommands)
    if (name == c.name) return moeq::cli::run_command(c.name, [&] { return c.run(args); });
  std::fprintf(stderr, "moeq: unknown command '%s' (moeq --help lists them)\n", name.c_str());
  return moeq::cli::kExitUsage;
}
