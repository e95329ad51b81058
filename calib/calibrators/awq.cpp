#include "calib/calibrators/awq.h"

#include <cfloat>
#include <cmath>
#include <string>

#include "core/error.h"

namespace moeq {
namespace {

std::string shape_of(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

}  // namespace

std::vector<double> awq_alphas(double step) {
  if (!(step > 0) || step > 1) throw Error("awq: alpha_step must be in (0, 1], got " + std::to_string(step));
  // torch.arange(0, 1 + step, step): ceil((end - start) / step) values start + i * step, in float32.
  const int64_t n = static_cast<int64_t>(std::ceil((1.0 + step) / step));
  std::vector<double> a;
  for (int64_t i = 0; i < n; ++i) a.push_back(static_cast<double>(static_cast<float>(i * step)));
  return a;
}

at::Tensor awq_weight_mean(const at::Tensor& w, int64_t block) {
  const int64_t E = w.size(0), out = w.size(1), in = w.size(2);
  if (block < 1 || in % block != 0)
    throw Error("awq: block " + std::to_string(block) + " does not divide the input width " + std::to_string(in));
  const at::Tensor a = w.to(at::kFloat).abs().reshape({E, out, in / block, block});
  const at::Tensor norm = a / (a.amax(-1, /*keepdim=*/true) + FLT_MIN);
  return norm.reshape({E, out, in}).mean(1);
}

at::Tensor awq_scales(const at::Tensor& x_mean, const at::Tensor& w_mean, double alpha) {
  at::Tensor s = (x_mean.pow(alpha) / (w_mean.pow(1.0 - alpha) + FLT_MIN)).clamp(1e-4, 1e4);
  const at::Tensor mx = s.amax(-1, true), mn = s.amin(-1, true);
  return s / (mx * mn).sqrt();
}

AwqResult awq_search(const at::Tensor& w_in, const at::Tensor& h_in, const at::Tensor& x_mean_in, int64_t block,
                     const AwqFakeQuant& fake_quant, double alpha_step) {
  if (w_in.dim() != 3 || h_in.dim() != 3 || x_mean_in.dim() != 2 || h_in.size(0) != w_in.size(0) || h_in.size(1) != w_in.size(2) ||
      h_in.size(2) != w_in.size(2) || x_mean_in.size(0) != w_in.size(0) || x_mean_in.size(1) != w_in.size(2))
    throw Error("awq: weights " + shape_of(w_in) + ", Hessians " + shape_of(h_in) + " and input means " + shape_of(x_mean_in) +
                " do not fit (expected [E, out, in], [E, in, in], [E, in])");
  const at::Tensor W = w_in.to(at::kFloat);
  const at::Tensor H = h_in.to(at::kFloat);
  const at::Tensor xm = x_mean_in.to(at::kFloat);
  const at::Tensor wm = awq_weight_mean(W, block);
  const int64_t out = W.size(1);
  AwqResult r;
  r.alphas = awq_alphas(alpha_step);
  std::vector<at::Tensor> losses;
  for (double a : r.alphas) {
    const at::Tensor s = awq_scales(xm, wm, a).unsqueeze(1);  // [E, 1, in]
    const at::Tensor q = fake_quant(W * s) / s;
    const at::Tensor d = W - q;
    losses.push_back((at::bmm(d, H) * d).sum({1, 2}) / (2.0 * static_cast<double>(out)));
  }
  r.loss = at::stack(losses, 1);
  r.best = std::get<1>(r.loss.min(1));  // the first minimum, as Python's min over the dict
  std::vector<at::Tensor> per;
  for (size_t k = 0; k < r.alphas.size(); ++k) per.push_back(awq_scales(xm, wm, r.alphas[k]));
  const at::Tensor all = at::stack(per, 1);  // [E, alphas, in]
  r.scales = at::gather(all, 1, r.best.view({-1, 1, 1}).expand({W.size(0), 1, W.size(2)})).squeeze(1);
  return r;
}

}  // namespace moeq
