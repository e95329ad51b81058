#pragma once
// `moeq calibrate`: token ids -> the native forward with a StatsObserver -> calib.h5.
#include <ATen/ATen.h>

#include <cstdint>
#include <string>

#include "calib/calib_file.h"
#include "calib/forward.h"

namespace moeq {

struct CalibrateOptions {
  std::string model, data, out;
  int64_t samples = 512, seq_len = 512;
  int64_t chunk = 8;              // samples per forward call of a layer
  std::string device = "cpu";     // cpu | cuda
  std::string dtype = "bf16";     // compute dtype: bf16 | f32
  bool all_experts_stats = false; // ForwardOptions::all_experts_see_all_tokens
  bool channel_amax = false;      // per-input-channel amax too
  bool progress = true;           // one line per decoder layer on stderr
  // Also accumulate the routed experts' GPTQ Hessians and write them to this file
  // (calib/hessian_file.h); calibrate_model sets it from --gptq-hessians.
  std::string hessians_out;
};

// The forward's options for a calibration run (device, compute dtype, chunk, all-experts mode).
ForwardOptions forward_options(const CalibrateOptions& opt);

// Runs the native forward over `ids` [samples, seq] and returns the statistics with every
// metadata field filled (model fingerprint, data description, device, timing).
CalibData calibrate_ids(const CalibrateOptions& opt, const at::Tensor& ids, const std::string& data_description);

// The same with a given forward (calibrate_ids passes make_forward's; tests a stand-in).
CalibData calibrate_with(MoeForward& fwd, const CalibrateOptions& opt, const ModelConfig& cfg, const Checkpoint& ck,
                         const at::Tensor& ids, const std::string& data_description);

// The whole command: loads the data, calibrates, writes opt.out atomically, prints the
// summary (peak device memory, tokens/s, expert coverage, fallbacks).
void calibrate_model(const CalibrateOptions& opt);

}  // namespace moeq
