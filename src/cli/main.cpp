// moeq: calibration and post-training quantization for Mixture-of-Experts checkpoints.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"

namespace {

struct Command {
  const char* name;
  int (*run)(const std::vector<std::string>&);
  const char* help;
};

const Command kCommands[] = {
    {"inspect", moeq::cli::cmd_inspect, "MODEL_DIR [--json] [--summary] [--strict]: architecture, sites, bytes per role"},
    {"make-demo", moeq::cli::cmd_make_demo, "OUT_DIR [--overwrite]: write the embedded demo MoE checkpoints"},
    {"calibrate", moeq::cli::cmd_calibrate, "MODEL_DIR --data FILE -o CALIB.h5 [--samples N] [--seq-len N] [--device cpu|cuda]: activation statistics"},
    {"quantize", moeq::cli::cmd_quantize, "MODEL_DIR --recipe R.yaml -o OUT [--calib CALIB.h5] [--device cpu|cuda]: quantize and export"},
    {"verify", moeq::cli::cmd_verify, "EXPORT_DIR [--source MODEL_DIR] [--json]: check every expert weight and scale"},
    {"report", moeq::cli::cmd_report, "EXPORT_DIR [--json]: print the skipped-layers report"},
    {"compare", moeq::cli::cmd_compare, "MODEL_DIR (--recipes R.yaml ... | --formats nvfp4,fp8,...) -o REPORT_DIR: weight error and size side by side"},
    {"bench", moeq::cli::cmd_bench, "formats [--device cpu|cuda] [--shape E,out,in]: kernel vs torch-op throughput; calibrate MODEL: forward vs forward + statistics; source [--source fp8-block|mxfp4]: decode + nvfp4 GB/s"},
};

void usage(FILE* to) {
  std::fprintf(to, "usage: moeq COMMAND [ARGS]\n\ncommands:\n");
  for (const auto& c : kCommands) std::fprintf(to, "  %-10s %s\n", c.name, c.help);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& c : kCommands) {
    if (name != c.name) continue;
    try {
      return c.run(args);
    } catch (const moeq::Error& e) {
      std::fprintf(stderr, "moeq %s: error: %s\n", c.name, e.what());
      return 1;
    } catch (const std::exception& e) {
      std::string msg = e.what();  // libtorch messages span lines: keep the first
      msg = msg.substr(0, msg.find('\n'));
      std::fprintf(stderr, "moeq %s: internal error: %s\n", c.name, msg.c_str());
      return 3;
    }
  }
  std::fprintf(stderr, "moeq: unknown command '%s'\n", name.c_str());
  usage(stderr);
  return 2;
}
