#pragma once
// AWQ on an input that several experts share (the routed experts' gate/up input: the output of
// the norm before the MoE, docs/awq.md): ONE scale s per input channel for the whole layer, a
// joint search over the experts, then folded into the norm (awq_fold_norm) with every other
// reader of the norm's output compensated (columns x s, calib/calibrators/awq_fold.h).
//   x_mean[j] = sqrt(sum_e n_e H_e[j, j] / 2 / sum_e n_e): the RMS of the routed rows (H_e = 2/n_e X_e^T X_e);
//   w_mean[j] = the mean over experts of awq_weight_mean(W_e) (each expert's rows weigh alike);
//   for alpha on awq_alphas(step): s = awq_scales(x_mean, w_mean, alpha) and
//     loss(alpha) = sum_e n_e tr(dW_e H_e dW_e^T) / (2 out) / sum_e n_e,  dW_e = W_e - Q(W_e s) / s:
//   the mean squared gate/up output error over every routed row; the first least loss.
#include <ATen/ATen.h>

#include <functional>
#include <vector>

#include "calib/calibrators/awq.h"

namespace moeq {

struct AwqSharedResult {
  std::vector<double> alphas;
  at::Tensor loss;    // [alphas] float32
  int64_t best = 0;   // index into alphas
  at::Tensor scales;  // [in] float32
  double plain = 0;   // the loss with s = 1
};

// Maps x_mean and w_mean [in] to values shared where the scales must be equal (o_proj's heads of
// one kv group, calib/calibrators/awq_attn.h); s is a function of them, so it is shared too.
using AwqTie = std::function<at::Tensor(const at::Tensor&)>;

// w [E, out, in] (an expert's gate rows then up rows; or one linear's rows, E = 1), h [E, in, in],
// tokens [E] (n_e). Throws moeq::Error on mismatched shapes or when no expert has a routed row.
AwqSharedResult awq_shared_search(const at::Tensor& w, const at::Tensor& h, const at::Tensor& tokens, int64_t block,
                                  const AwqFakeQuant& fake_quant, double alpha_step, const AwqTie& tie = nullptr);

// The norm weight that divides its output by s: w / s, or for a (1 + w) norm (1 + w) / s - 1;
// float32 out.
at::Tensor awq_fold_norm(const at::Tensor& w, const at::Tensor& s, bool one_plus);

}  // namespace moeq
