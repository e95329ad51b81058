// `moeq bench calibrate MODEL`: tokens/s of the native forward alone (no observer) and of the
// calibration (the same forward with the statistics observer) on the same ids, in one process
// after a warm-up chunk: what the statistics cost. bench/calib_bench.sh compares both with
// transformers' forward.
#include <algorithm>
#include <cstdio>

#include "calib/calibrate.h"
#include "calib/dataset.h"
#include "cli/args.h"
#include "cli/commands.h"

namespace moeq::cli {

int bench_calibrate(const std::vector<std::string>& argv) {
  const std::string usage = "moeq bench calibrate MODEL_DIR [--data FILE] [--samples N] [--seq-len S] [--chunk C] "
                            "[--device cpu|cuda] [--dtype bf16|f32]";
  Args args(argv, {}, {"data", "samples", "seq-len", "chunk", "device", "dtype"});
  args.expect_positional(2, usage);
  CalibrateOptions o;
  o.model = args.positional()[1];
  o.data = args.get("data");
  o.samples = args.integer("samples", 64);
  o.seq_len = args.integer("seq-len", 512);
  o.chunk = args.integer("chunk", o.chunk);
  o.device = args.get("device", "cpu");
  o.dtype = args.get("dtype", o.dtype);
  o.progress = false;
  const CalibTokens tok = load_calibration_tokens({o.data, o.model, o.samples, o.seq_len});
  const ModelConfig cfg = load_config(o.model);
  auto ck = Checkpoint::open(o.model);
  auto fwd = make_forward(ck, cfg, forward_options(o));
  fwd->run(tok.ids.narrow(0, 0, std::min<int64_t>(o.chunk, tok.ids.size(0))), nullptr, {});  // warm-up
  const ForwardStats plain = fwd->run(tok.ids, nullptr, {});
  const CalibData stats = calibrate_with(*fwd, o, cfg, *ck, tok.ids, tok.description);
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
