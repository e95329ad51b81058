#include "calib/calibrators/int_mse_scales.h"

#include <string>

#include "core/error.h"
#include "formats/intq/intq_eps.h"

namespace moeq {
at::Tensor int_mse_group_scales(const at::Tensor& w, int64_t group, double qmin, double qmax, const IntMseOptions& o) {
  if (w.dim() != 3 || group < 1 || w.size(2) % group != 0)
    throw Error("int mse scales: weights must be [E, out, in] with the group " + std::to_string(group) + " dividing in");
  const int64_t E = w.size(0), out = w.size(1), ng = w.size(2) / group;
  const at::Tensor x = w.view({E, out, ng, group});
  const at::Tensor xf = x.to(at::kFloat);
  auto constant = [&](double v) { return at::full({}, v, w.options()); };
  // As the max path: min / max in the weight's dtype, symmetric range max(|min|, max).
  const at::Tensor amax = at::maximum(x.amin(-1).clamp_max(0).neg(), x.amax(-1).clamp_min(0));
  const at::Tensor eps = constant(intq_dtype_eps(w.scalar_type()));
  const int64_t steps = static_cast<int64_t>(o.maxshrink * o.grid);
  at::Tensor best_scale, best_err;
  int64_t no_improve = 0;
  for (int64_t i = 0; i < steps; ++i) {
    const double p = 1.0 - static_cast<double>(i) / o.grid;
    at::Tensor s = (i == 0 ? amax : amax * p) / constant((qmax - qmin) / 2);
    s = at::where(s == 0, eps, s);
    const at::Tensor sf = s.to(at::kFloat).unsqueeze(-1);
    const at::Tensor q = (xf / sf).to(w.scalar_type()).to(at::kFloat).round().clamp(qmin, qmax) * sf;
    const at::Tensor err = (q - xf).abs().pow(o.norm).sum(-1);
    if (i == 0) {
      best_scale = s.clone();
      best_err = err;
      continue;
    }
    const at::Tensor better = err < best_err;
    if (better.any().item<bool>()) {
      best_err = at::where(better, err, best_err);
      best_scale = at::where(better, s, best_scale);
      no_improve = 0;
    } else if (++no_improve >= o.patience) {
      break;
    }
  }
  return best_scale;
}

}  // namespace moeq
