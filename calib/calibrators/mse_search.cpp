// MSE-optimal weight scales (see mse_search.h for the searches and their tie rule).
#include "calib/calibrators/mse_search.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "formats/e2m1_host.h"
#include "formats/format.h"
#include "formats/format_util.h"
#include "formats/cuda_stream.h"
#include "formats/nvfp4/nvfp4_mse.h"

namespace moeq {
namespace {

constexpr uint8_t kFp8One = 0x38;      // the max path's scale of an all-zero expert (1.0)

// A 0-d float tensor on `t`'s device: ATen on CUDA multiplies by the reciprocal of a CPU
// scalar divisor, the CPU (and ModelOpt's CPU export) divides.
at::Tensor dev_scalar(float v, const at::Tensor& t) { return at::full({}, v, t.options().dtype(at::kFloat)); }

// FP8 weight_scale from amax, as fp8.cpp (ModelOpt's export_amax and get_scaling_factor).
at::Tensor fp8_scale(const at::Tensor& amax) {
  const at::Tensor a = at::where(amax == 0, at::full_like(amax, 448.f), amax)
                           .clamp(std::numeric_limits<float>::min(), std::numeric_limits<float>::max());
  return a / dev_scalar(448.f, a);
}

// Squared error of FP8 quantization of x [E, R, C] float with scale [E, R or 1, 1], summed
// over `dims` in double.
at::Tensor fp8_error(const at::Tensor& x, const at::Tensor& scale, at::IntArrayRef dims) {
  const at::Tensor deq = (x / scale).clamp(-448.0, 448.0).to(at::kFloat8_e4m3fn).to(at::kFloat) * scale;
  return (deq - x).square().sum(dims, false, at::kDouble);
}

// Keeps the first least error: best_* updated where err is strictly lower.
void keep_better(const at::Tensor& err, const at::Tensor& cand, at::Tensor& best_err, at::Tensor& best) {
  const at::Tensor better = err < best_err;
  best_err = at::where(better, err, best_err);
  best = at::where(better, cand, best);
}

at::Tensor float3(const at::Tensor& w) { return (w.dim() == 2 ? w.unsqueeze(0) : w).to(at::kFloat).contiguous(); }

// ---- NVFP4

// nvfp4_static_amax_byte (nvfp4_mse.h) in ATen ops.
at::Tensor static_amax_bytes_torch(const at::Tensor& block_amax, const at::Tensor& global_amax3) {
  at::Tensor s = block_amax / dev_scalar(6.f, block_amax);
  s = at::where(s == 0, 1.f, s);
  const at::Tensor v = (s * 448.f) / (global_amax3 / dev_scalar(6.f, block_amax));
  return v.clamp(0.001953125, 448.0).to(at::kFloat8_e4m3fn).view(at::kByte);
}

// Squared error of each block of xb [E, R, B, 16] with scale bytes [E, R, B] and global scale g3 [E, 1, 1].
at::Tensor block_errors_torch(const at::Tensor& xb, const at::Tensor& bytes, const at::Tensor& g3) {
  const at::Tensor denom = (bytes.view(at::kFloat8_e4m3fn).to(at::kFloat) * g3).unsqueeze(-1);
  const at::Tensor v = xb / denom;
  const at::Tensor deq = e2m1_values_torch(e2m1_codes_torch(v, v < 0), false) * denom;
  return (deq - xb).square().sum({-1}, false, at::kDouble);
}

// Global scale per expert (nvfp4.h: amax / 2688, 0 -> 1) and the amax itself, float [E].
at::Tensor global_scales(const at::Tensor& amax) {
  const at::Tensor gs = amax / dev_scalar(2688.f, amax);
  return at::where(gs == 0, 1.f, gs);
}

at::Tensor expert_amax(const at::Tensor& amax, int64_t experts, const at::Device& dev) {
  if (amax.numel() != experts)
    throw Error("nvfp4 mse: amax has " + std::to_string(amax.numel()) + " values, expected one per expert (" +
                std::to_string(experts) + ")");
  return amax.to(dev, at::kFloat).reshape({experts}).contiguous();
}

// The ATen-ops search over experts [e0, e1): bytes [n, R, B].
at::Tensor nvfp4_search_torch(const at::Tensor& x3, const at::Tensor& amax, const at::Tensor& mult) {
  const int64_t E = x3.size(0), R = x3.size(1), B = x3.size(2) / kNvfp4Block;
  const at::Tensor xb = x3.view({E, R, B, kNvfp4Block});
  const at::Tensor g3 = global_scales(amax).view({E, 1, 1});
  const at::Tensor a3 = amax.view({E, 1, 1});
  const at::Tensor bmax = xb.abs().amax(-1);
  at::Tensor best_err = at::full({E, R, B}, std::numeric_limits<double>::infinity(), x3.options().dtype(at::kDouble));
  at::Tensor best = at::zeros({E, R, B}, x3.options().dtype(at::kByte));
  const int64_t K = mult.defined() ? mult.numel() : kNvfp4SweepCandidates;
  for (int64_t k = 0; k < K; ++k) {
    const at::Tensor bytes = mult.defined()
                                 ? static_amax_bytes_torch(bmax * mult.select(0, k).to(x3.device()), a3)
                                 : at::full({E, R, B}, static_cast<int64_t>(k + 1), best.options());
    keep_better(block_errors_torch(xb, bytes, g3), bytes, best_err, best);
  }
  return best;
}

template <InType T>
void nvfp4_search_cpu(const WeightBatch& w, const float* amax, const float* mult, int64_t K, uint8_t* out) {
  const int64_t blocks = w.numel() / kNvfp4Block, per_expert = w.rows * w.cols / kNvfp4Block;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    float x[kNvfp4Block];
    for (int i = 0; i < kNvfp4Block; ++i) x[i] = load_as<T>(w.data, b * kNvfp4Block + i);
    out[b] = nvfp4_mse_block_byte(x, amax[b / per_expert], mult, K);
  }
}

}  // namespace

at::Tensor mse_multipliers(const WeightCalibrator& c) {
  return at::linspace(c.start_multiplier, c.stop_multiplier, c.num_steps(), at::TensorOptions().dtype(at::kFloat));
}

at::Tensor fp8_tensor_mse_amax(const std::vector<at::Tensor>& stacks, const at::Tensor& initial, const WeightCalibrator& c) {
  std::vector<at::Tensor> xs;
  for (const auto& s : stacks) xs.push_back(float3(s));
  const int64_t E = xs[0].size(0);
  const at::Tensor init = initial.to(xs[0].device(), at::kFloat).reshape({E});
  const at::Tensor mult = mse_multipliers(c);
  at::Tensor best_err = at::full({E}, std::numeric_limits<double>::infinity(), init.options().dtype(at::kDouble));
  at::Tensor best = init.clone();
  for (int64_t k = 0; k < mult.numel(); ++k) {
    const at::Tensor cand = init * mult.select(0, k).to(init.device());
    const at::Tensor scale = fp8_scale(cand).view({E, 1, 1});
    at::Tensor err = at::zeros({E}, best_err.options());
    for (const auto& x : xs) err = err + fp8_error(x, scale, {1, 2});
    keep_better(err, cand, best_err, best);
  }
  return best;
}

at::Tensor fp8_channel_mse_amax(const at::Tensor& stack, const WeightCalibrator& c) {
  const at::Tensor x = float3(stack);
  const at::Tensor init = x.abs().amax({2});  // [E, R]
  const at::Tensor mult = mse_multipliers(c);
  at::Tensor best_err = at::full(init.sizes(), std::numeric_limits<double>::infinity(), init.options().dtype(at::kDouble));
  at::Tensor best = init.clone();
  for (int64_t k = 0; k < mult.numel(); ++k) {
    const at::Tensor cand = init * mult.select(0, k).to(init.device());
    keep_better(fp8_error(x, fp8_scale(cand).unsqueeze(-1), {2}), cand, best_err, best);
  }
  return stack.dim() == 2 ? best.squeeze(0) : best;
}

at::Tensor nvfp4_mse_block_scales(const at::Tensor& stack, const at::Tensor& amax, const WeightCalibrator& c, bool torch_ops) {
  if (!c.is_mse()) throw Error("nvfp4_mse_block_scales: the calibrator is " + c.describe() + ", not mse");
  check_weight(stack, kNvfp4Name, kNvfp4Block);
  const at::Tensor w3 = to_3d(stack);
  const int64_t E = w3.size(0), R = w3.size(1), B = w3.size(2) / kNvfp4Block;
  const at::Tensor a = expert_amax(amax, E, w3.device());
  if (!(at::isfinite(a) & (a >= 0)).all().item<bool>()) throw Error("nvfp4 mse: the amax must be finite and non-negative");
  require_finite(w3, kNvfp4Name);
  const at::Tensor mult = c.fp8_scale_sweep ? at::Tensor() : mse_multipliers(c);
  at::Tensor bytes;
  if (torch_ops) {
    // Experts in groups of at most ~2^26 elements: the candidate loop holds a few float copies.
    const int64_t per = std::max<int64_t>(1, (int64_t{1} << 26) / std::max<int64_t>(1, R * B * kNvfp4Block));
    std::vector<at::Tensor> parts;
    for (int64_t e = 0; e < E; e += per) {
      const int64_t n = std::min(per, E - e);
      parts.push_back(nvfp4_search_torch(w3.narrow(0, e, n).to(at::kFloat), a.narrow(0, e, n), mult));
    }
    bytes = at::cat(parts);
  } else if (w3.is_cuda()) {
#ifdef MOEQ_WITH_CUDA
    bytes = at::empty({E, R, B}, w3.options().dtype(at::kByte));
    const at::Tensor m = mult.defined() ? mult.to(w3.device()) : at::Tensor();
    nvfp4_mse_search_cuda(as_batch(w3), a.data_ptr<float>(), m.defined() ? m.data_ptr<float>() : nullptr,
                          m.defined() ? m.numel() : 0, bytes.data_ptr<uint8_t>(), current_cuda_stream());
#else
    throw Error("nvfp4 mse: moeq was built without CUDA; move the weight to the CPU");
#endif
  } else {
    bytes = at::empty({E, R, B}, w3.options().dtype(at::kByte));
    const WeightBatch b = as_batch(w3);
    with_in_type(b.type, [&](auto t) {
      nvfp4_search_cpu<decltype(t)::value>(b, a.data_ptr<float>(), mult.defined() ? mult.data_ptr<float>() : nullptr,
                                           mult.defined() ? mult.numel() : 0, bytes.data_ptr<uint8_t>());
    });
  }
  bytes = at::where((a == 0).view({E, 1, 1}), at::full({}, static_cast<int64_t>(kFp8One), bytes.options()), bytes);
  return stack.dim() == 2 ? bytes.squeeze(0) : bytes;
}

at::Tensor nvfp4_block_errors(const at::Tensor& stack, const at::Tensor& amax, const at::Tensor& block_scales) {
  const at::Tensor x3 = float3(stack);
  const int64_t E = x3.size(0), R = x3.size(1), B = x3.size(2) / kNvfp4Block;
  const at::Tensor a = expert_amax(amax, E, x3.device());
  const at::Tensor bytes = block_scales.to(x3.device()).contiguous().view(at::kByte).reshape({E, R, B});
  return block_errors_torch(x3.view({E, R, B, kNvfp4Block}), bytes, global_scales(a).view({E, 1, 1}));
}

}  // namespace moeq
