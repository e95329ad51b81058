#include "calib/calibrate.h"

#include <chrono>
#include <cstdio>
#include <ctime>

#include "calib/coverage.h"
#include "calib/dataset.h"
#include "calib/forward.h"
#include "calib/model_forward.h"
#include "calib/hessian_observer.h"
#include "calib/stats_observer.h"
#include "core/error.h"
#include "core/format_util.h"
#include "io/output_guard.h"
#include "model/plugin.h"
#include "calib/hessian_file.h"

namespace moeq {
namespace {

constexpr const char* kToolVersion = "moeq 0.1.0";

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

at::Device device_of(const std::string& d) {
  if (d == "cpu") return at::kCPU;
  if (d == "cuda") {
    if (!at::hasCUDA()) throw Error("--device cuda: no CUDA device is available (use --device cpu)");
    return at::Device(at::kCUDA);
  }
  throw Error("--device must be cpu or cuda, got '" + d + "'");
}

at::ScalarType dtype_of(const std::string& d) {
  if (d == "bf16") return at::kBFloat16;
  if (d == "f32") return at::kFloat;
  throw Error("--dtype must be bf16 or f32, got '" + d + "'");
}

}  // namespace

ForwardOptions forward_options(const CalibrateOptions& opt) {
  ForwardOptions fo;
  fo.device = device_of(opt.device);
  fo.dtype = dtype_of(opt.dtype);
  fo.chunk_samples = opt.chunk;
  fo.all_experts_see_all_tokens = opt.all_experts_stats;
  return fo;
}

CalibData calibrate_ids(const CalibrateOptions& opt, const at::Tensor& ids, const std::string& data_description) {
  if (opt.chunk < 1) throw Error("--chunk must be >= 1, got " + std::to_string(opt.chunk));
  const Model model = open_model(opt.model);
  std::unique_ptr<MoeForward> fwd = make_forward(model, forward_options(opt));
  return calibrate_with(*fwd, opt, model.config, *model.checkpoint, ids, data_description);
}

CalibData calibrate_with(MoeForward& fwd, const CalibrateOptions& opt, const ModelConfig& cfg, const Checkpoint& ck,
                         const at::Tensor& ids, const std::string& data_description) {
  if (ids.dim() != 2 || ids.scalar_type() != at::kLong)
    throw Error("calibration ids must be int64 [samples, seq_len], got " + std::string(c10::toString(ids.scalar_type())) +
                " with " + std::to_string(ids.dim()) + " dimensions");
  StatsOptions so;
  so.channel_amax = opt.channel_amax;
  const auto start = std::chrono::steady_clock::now();
  if (opt.progress)
    so.on_layer = [&](int64_t layer) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::fprintf(stderr, "[calibrate] layer %lld/%lld (%.1f s)\n", static_cast<long long>(layer + 1),
                   static_cast<long long>(cfg.num_layers), s);
    };
  StatsObserver obs(fwd.sites(), so);
  HessianObserver hobs(&obs);
  const ForwardStats st = fwd.run(ids, opt.hessians_out.empty() ? static_cast<ActivationObserver*>(&obs) : &hobs, {});
  CalibData d = obs.finish();
  d.model_fingerprint = model_fingerprint(cfg, ck);
  if (!opt.hessians_out.empty()) hobs.write(opt.hessians_out, d.model_fingerprint);
  d.model_summary = model_summary(cfg, ck);
  d.model_dir = opt.model;
  d.data_description = data_description;
  d.tool_version = kToolVersion;
  d.device = opt.device;
  d.dtype = opt.dtype;
  d.created_utc = utc_now();
  d.samples = ids.size(0);
  d.seq_len = ids.size(1);
  d.tokens = st.tokens > 0 ? st.tokens : ids.numel();
  d.all_experts_stats = opt.all_experts_stats;
  d.seconds = st.seconds;
  d.peak_device_bytes = st.peak_device_bytes;
  return d;
}

void calibrate_model(const CalibrateOptions& opt) {
  if (opt.out.empty()) throw Error("calibrate: no output file (-o CALIB.h5)");
  refuse_output_over_input(opt.out, "-o", opt.model, "the source checkpoint");
  refuse_output_over_input(opt.out, "-o", opt.data, "--data");
  CalibDataSpec spec{opt.data, opt.model, opt.samples, opt.seq_len};
  const CalibTokens tok = load_calibration_tokens(spec);
  std::fprintf(stderr, "[calibrate] %lld samples x %lld tokens: %s\n", static_cast<long long>(tok.ids.size(0)),
               static_cast<long long>(tok.ids.size(1)), tok.description.c_str());
  const CalibData d = calibrate_ids(opt, tok.ids, tok.description);
  write_calib_file(opt.out, d);
  if (!opt.hessians_out.empty()) std::printf("wrote %s: GPTQ Hessians of the routed experts\n", opt.hessians_out.c_str());

  std::printf("wrote %s: %zu sites, %zu MoE layers, %lld tokens in %.1f s (%.0f tokens/s) on %s, peak device memory %s\n",
              opt.out.c_str(), d.sites.size(), d.layers.size(), static_cast<long long>(d.tokens), d.seconds,
              d.seconds > 0 ? d.tokens / d.seconds : 0.0, d.device.c_str(),
              human_bytes(static_cast<uint64_t>(d.peak_device_bytes)).c_str());
  int64_t zero = 0;
  for (const auto& c : expert_coverage(d)) {
    zero += static_cast<int64_t>(c.zero_token_experts.size());
    std::printf("  %s\n", coverage_line(c).c_str());
  }
  const auto fb = d.fallbacks();
  if (zero == 0) std::printf("coverage: every expert of every MoE layer received tokens\n");
  else
    std::printf("coverage: %lld experts received no token; %zu expert sites use the fallback amax (%s)\n",
                static_cast<long long>(zero), fb.size(), d.fallback_rule.c_str());
  if (!d.unobserved.empty())
    std::printf("no statistics for %zu sites the forward does not report (first: %s); quantize refuses input_quant on them\n",
                d.unobserved.size(), d.unobserved[0].c_str());
}

}  // namespace moeq
