// `moeq calibrate MODEL --data FILE -o calib.h5 [--samples 512] [--seq-len 512] [--device cpu|cuda]
//  [--chunk N] [--dtype bf16|f32] [--all-experts-stats] [--channel-amax]`
#include "calib/calibrate.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "quant/hessian_file.h"

namespace moeq::cli {

int cmd_calibrate(const std::vector<std::string>& argv) {
  Args args(argv, {"all-experts-stats", "channel-amax", "quiet", "gptq-hessians"},
            {"data", "o", "out", "samples", "seq-len", "device", "chunk", "dtype"});
  const std::string usage =
      "moeq calibrate MODEL_DIR --data FILE -o CALIB.h5 [--samples 512] [--seq-len 512] [--device cpu|cuda] "
      "[--chunk 8] [--dtype bf16|f32] [--all-experts-stats] [--channel-amax] [--gptq-hessians]";
  args.expect_positional(1, usage);
  CalibrateOptions o;
  o.model = args.positional()[0];
  o.data = args.get("data");
  o.out = args.get("o", args.get("out"));
  if (o.out.empty()) throw Error("usage: " + usage);
  o.samples = args.integer("samples", o.samples);
  o.seq_len = args.integer("seq-len", o.seq_len);
  o.chunk = args.integer("chunk", o.chunk);
  o.device = args.get("device", o.device);
  o.dtype = args.get("dtype", o.dtype);
  o.all_experts_stats = args.flag("all-experts-stats");
  o.channel_amax = args.flag("channel-amax");
  o.progress = !args.flag("quiet");
  if (args.flag("gptq-hessians")) o.hessians_out = hessian_path_for(o.out);  // CALIB.hessians.safetensors
  calibrate_model(o);
  return 0;
}

}  // namespace moeq::cli
