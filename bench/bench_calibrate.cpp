// `moeq bench calibrate MODEL`: tokens/s of the native forward alone (no observer) and of the
// calibration (the same forward with the statistics observer) on the same ids, in one process
// after a warm-up chunk: what the statistics cost. bench/calib_bench.sh compares both with
// transformers' forward.
#include <algorithm>
#include <cstdio>

#include "calib/calibrate.h"
#include "calib/dataset.h"
#include "calib/model_forward.h"
#include "app/cli/parser.h"
#include "app/cli/commands.h"

namespace moeq::cli {

int bench_calibrate(const std::vector<std::string>& argv) {
  CalibrateOptions o;
  o.samples = 64;
  o.seq_len = 512;
  std::string what;
  Command c("bench calibrate", "Tokens/s of the native forward alone and with the calibration statistics, on the same ids",
            "MODEL_DIR [--data FILE] [--samples N] [--seq-len S] [--chunk C] [--device cpu|cuda] [--dtype bf16|f32]",
            "moeq bench calibrate demo/qwen3_moe_fused --samples 16 --seq-len 256");
  c.positional("calibrate", what, "the benchmark: calibrate");
  c.positional("MODEL_DIR", o.model, "Hugging Face checkpoint directory (config.json + safetensors)");
  c.option("--data", o.data, "calibration data (as moeq calibrate --data)", "the embedded default data");
  c.option("--samples", o.samples, "number of samples")->check(integer_at_least(1));
  c.option("--seq-len", o.seq_len, "tokens per sample")->check(integer_at_least(1));
  c.option("--chunk", o.chunk, "samples per forward call of a layer")->check(integer_at_least(1));
  c.option("--device", o.device, "where the forward runs")->check(one_of({"cpu", "cuda"}));
  c.option("--dtype", o.dtype, "compute dtype of the forward")->check(one_of({"bf16", "f32"}));
  if (!c.parse(argv)) return 0;
  o.progress = false;
  const CalibTokens tok = load_calibration_tokens({o.data, o.model, o.samples, o.seq_len});
  const Model model = open_model(o.model);
  auto fwd = make_forward(model, forward_options(o));
  fwd->run(tok.ids.narrow(0, 0, std::min<int64_t>(o.chunk, tok.ids.size(0))), nullptr, {});  // warm-up
  const ForwardStats plain = fwd->run(tok.ids, nullptr, {});
  const CalibData stats = calibrate_with(*fwd, o, model.config, *model.checkpoint, tok.ids, tok.description);
  const double tokens = static_cast<double>(tok.ids.numel());
  std::printf("moeq bench calibrate: %s, %lld x %lld tokens, chunk %lld, %s %s\n", o.model.c_str(),
              static_cast<long long>(tok.ids.size(0)), static_cast<long long>(tok.ids.size(1)),
              static_cast<long long>(o.chunk), o.device.c_str(), o.dtype.c_str());
  std::printf("forward only        %10.0f tokens/s  %7.3f s  peak %.2f GiB\n", tokens / plain.seconds, plain.seconds,
              plain.peak_device_bytes / double(1ull << 30));
  std::printf("forward + statistics %9.0f tokens/s  %7.3f s  peak %.2f GiB  (statistics overhead %+.1f%%)\n",
              tokens / stats.seconds, stats.seconds, stats.peak_device_bytes / double(1ull << 30),
              100.0 * (stats.seconds / plain.seconds - 1.0));
  return 0;
}

}  // namespace moeq::cli
