#include "calib/calibrators/awq_norm.h"

#include <cfloat>

#include "core/error.h"

namespace moeq {

AwqSharedResult awq_shared_search(const at::Tensor& w_in, const at::Tensor& h_in, const at::Tensor& tokens_in, int64_t block,
                                  const AwqFakeQuant& fake_quant, double alpha_step, const AwqTie& tie) {
  if (w_in.dim() != 3 || h_in.dim() != 3 || tokens_in.dim() != 1 || h_in.size(0) != w_in.size(0) ||
      h_in.size(1) != w_in.size(2) || h_in.size(2) != w_in.size(2) || tokens_in.size(0) != w_in.size(0))
    throw Error("awq (shared input): weights, Hessians and token counts do not fit (expected [E, out, in], [E, in, in], [E])");
  const at::Tensor W = w_in.to(at::kFloat);
  const at::Tensor H = h_in.to(at::kFloat);
  const at::Tensor n = tokens_in.to(W.device()).to(at::kDouble).to(at::kFloat);
  const double total = n.sum().item<double>();
  if (!(total > 0)) throw Error("awq (shared input): no expert of the layer has a routed calibration row");
  const at::Tensor wn = (n / total).view({-1, 1});  // each expert's share of the routed rows
  at::Tensor x_mean = ((at::diagonal(H, 0, -2, -1) / 2).clamp_min(0) * wn).sum(0).sqrt();  // [in]
  {
    // A dead channel gets the smallest live value (as for down_proj, awq_job.cpp).
    const at::Tensor live = x_mean > 0;
    const double mn = live.any().item<bool>() ? x_mean.masked_select(live).min().item<double>() : 1.0;
    x_mean = at::where(live, x_mean, at::full_like(x_mean, mn));
  }
  at::Tensor w_mean = awq_weight_mean(W, block).mean(0);  // [in]
  if (tie) {
    x_mean = tie(x_mean);
    w_mean = tie(w_mean);
  }
  const double out = static_cast<double>(W.size(1));
  auto loss_of = [&](const at::Tensor& q) {
    const at::Tensor d = W - q;
    return ((at::bmm(d, H) * d).sum({1, 2}) / (2.0 * out) * wn.view(-1)).sum();
  };
  AwqSharedResult r;
  r.alphas = awq_alphas(alpha_step);
  std::vector<at::Tensor> losses, scales;
  for (double a : r.alphas) {
    const at::Tensor s = awq_scales(x_mean.unsqueeze(0), w_mean.unsqueeze(0), a).squeeze(0);
    const at::Tensor sv = s.view({1, 1, -1});
    losses.push_back(loss_of(fake_quant(W * sv) / sv));
    scales.push_back(s);
  }
  r.loss = at::stack(losses).to(at::kCPU);
  r.best = std::get<1>(r.loss.min(0)).item<int64_t>();
  r.scales = scales[static_cast<size_t>(r.best)].to(at::kCPU);
  r.plain = loss_of(fake_quant(W)).item<double>();
  return r;
}

at::Tensor awq_fold_norm(const at::Tensor& w, const at::Tensor& s, bool one_plus) {
  const at::Tensor wf = w.to(at::kFloat);
  const at::Tensor sf = s.to(wf.device()).to(at::kFloat);
  if (wf.sizes() != sf.sizes()) throw Error("awq: the norm weight and its scales differ in shape");
  return one_plus ? (1.0f + wf) / sf - 1.0f : wf / sf;
}

}  // namespace moeq
