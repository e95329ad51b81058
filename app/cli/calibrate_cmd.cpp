// `moeq calibrate MODEL --data FILE -o calib.h5 [--samples 512] [--seq-len 512] [--device cpu|cuda]
//  [--chunk N] [--dtype bf16|f32] [--all-experts-stats] [--channel-amax]`
#include "calib/calibrate.h"
#include "app/cli/commands.h"
#include "app/cli/parser.h"
#include "calib/hessian_file.h"

namespace moeq::cli {

int cmd_calibrate(const std::vector<std::string>& argv) {
  CalibrateOptions o;
  bool quiet = false, gptq_hessians = false;
  Command c("calibrate", "Run the native forward over calibration data; write every linear's input amax to calib.h5",
            "MODEL_DIR --data FILE -o CALIB.h5 [--samples 512] [--seq-len 512] [--device cpu|cuda] [--chunk 8] "
            "[--dtype bf16|f32] [--all-experts-stats] [--channel-amax] [--gptq-hessians]",
            "moeq calibrate demo/qwen3_moe_fused --data /work/shared/data/calib.jsonl --samples 64 -o calib.h5");
  c.positional("MODEL_DIR", o.model, "Hugging Face checkpoint directory (config.json + safetensors)");
  c.option("--data", o.data, "calibration data: .jsonl (text), .txt, .npy / .safetensors / .h5 ids", "the embedded default data");
  c.option("-o,--output", o.out, "calib.h5 to write")->required();
  c.alias("--out", o.out);
  c.option("--samples", o.samples, "number of samples")->check(integer_at_least(1));
  c.option("--seq-len", o.seq_len, "tokens per sample")->check(integer_at_least(1));
  c.option("--chunk", o.chunk, "samples per forward call of a layer")->check(integer_at_least(1));
  c.option("--device", o.device, "where the forward runs")->check(one_of({"cpu", "cuda"}));
  c.option("--dtype", o.dtype, "compute dtype of the forward")->check(one_of({"bf16", "f32"}));
  c.flag("--all-experts-stats", o.all_experts_stats, "every expert sees every token (statistics only; routing unchanged)");
  c.flag("--channel-amax", o.channel_amax, "also write per-input-channel amax");
  c.flag("--quiet", quiet, "no per-layer progress lines on stderr");
  c.flag("--gptq-hessians", gptq_hessians, "also write GPTQ Hessians (per routed expert, and per input of every other linear) to CALIB.hessians.safetensors (recipes with calibrator: gptq or awq)");
  if (!c.parse(argv)) return 0;
  o.progress = !quiet;
  if (gptq_hessians) o.hessians_out = hessian_path_for(o.out);  // CALIB.hessians.safetensors
  calibrate_model(o);
  return 0;
}

}  // namespace moeq::cli
