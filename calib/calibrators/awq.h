#pragma once
// AWQ-style activation-aware scaling (Lin et al. 2023, arXiv:2306.00978) of one expert input,
// batched over experts, with NVIDIA ModelOpt's awq_lite search (model_calib.py awq_lite):
//   w_mean[j] = mean over rows of |w[r, j]| / amax(|w| over j's block of `block` inputs)
//   for alpha in 0, step, 2 step, ..., 1 (float32 values, as torch.arange gives them):
//     s = clamp(x_mean^alpha / (w_mean^(1 - alpha) + FLT_MIN), 1e-4, 1e4);  s /= sqrt(max(s) min(s))
//     loss(alpha) = the layer's mean squared output error with W -> Q(W s) / s, the input x / s:
//                   ||X (W - Q(W s) / s)^T||^2 / (n out) = tr(dW H dW^T) / (2 out), H = 2/n X^T X
//   the alpha of the least loss (the first on ties) and its s.
// ModelOpt measures the loss on the calibration activations; moeq takes it from the Hessian the
// calibration accumulated (the same number up to float rounding), so no activations are kept.
// Oracle: tests/python/make_awq_reference.py (ModelOpt's own awq_lite on one nn.Linear),
// tests/quant/test_awq.cpp.
#include <ATen/ATen.h>

#include <functional>
#include <vector>

namespace moeq {

// Q(W s): [E, out, in] float32 in, the fake-quantized (quantized, dequantized) weights out.
using AwqFakeQuant = std::function<at::Tensor(const at::Tensor&)>;

struct AwqResult {
  std::vector<double> alphas;  // the grid
  at::Tensor loss;             // [E, alphas] float32: tr(dW H dW^T) / (2 out) for each alpha
  at::Tensor best;             // [E] int64: index of the chosen alpha
  at::Tensor scales;           // [E, in] float32: s of the chosen alpha (W -> W s, x -> x / s)
};

// The grid of ModelOpt's awq_lite: torch.arange(0, 1 + step, step) in float32.
std::vector<double> awq_alphas(double step);
// w [E, out, in] -> [E, in] (block must divide in).
at::Tensor awq_weight_mean(const at::Tensor& w, int64_t block);
// x_mean, w_mean [E, in] -> s [E, in] for one alpha.
at::Tensor awq_scales(const at::Tensor& x_mean, const at::Tensor& w_mean, double alpha);
// w [E, out, in], h [E, in, in] (2/n X^T X), x_mean [E, in] (mean |x| per input channel).
// Throws moeq::Error on mismatched shapes.
AwqResult awq_search(const at::Tensor& w, const at::Tensor& h, const at::Tensor& x_mean, int64_t block,
                     const AwqFakeQuant& fake_quant, double alpha_step);

}  // namespace moeq
