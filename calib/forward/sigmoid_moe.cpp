#include "calib/forward/sigmoid_moe.h"

#include <limits>

#include "core/error.h"

namespace moeq::fwd {

Routing sigmoid_group_topk(const at::Tensor& logits, const at::Tensor& bias, const SigmoidRouterSpec& s) {
  const int64_t T = logits.size(0), E = logits.size(1);
  if (E % s.n_group != 0)
    throw Error("native forward: " + std::to_string(E) + " experts do not split into n_group = " + std::to_string(s.n_group) +
                " groups");
  at::Tensor scores = logits.to(at::kFloat).sigmoid();
  at::Tensor choice = bias.defined() ? scores + bias.to(at::kFloat) : scores;
  if (s.topk_group < s.n_group) {
    at::Tensor grouped = choice.view({T, s.n_group, E / s.n_group});
    at::Tensor group_scores = std::get<0>(grouped.topk(2, -1)).sum(-1);
    at::Tensor keep = at::zeros_like(group_scores, at::kBool).scatter_(1, std::get<1>(group_scores.topk(s.topk_group, -1)), true);
    choice = grouped.masked_fill(keep.logical_not().unsqueeze(-1), -std::numeric_limits<float>::infinity()).view({T, E});
  }
  at::Tensor ids = std::get<1>(choice.topk(s.top_k, -1));
  at::Tensor w = scores.gather(1, ids);
  if (s.renormalize) w = w / (w.sum(-1, true) + 1e-20);
  return Routing{ids, w * s.scaling};
}

at::Tensor sigmoid_moe(const LayerRun& r, const at::Tensor& x, const SigmoidRouterSpec& s, const Activation& act) {
  if (!r.w.has("router")) return gated_mlp(r, "mlp", x, act);
  at::Tensor flat = x.reshape({-1, x.size(-1)});
  r.observe({"router"}, flat);
  at::Tensor logits = at::linear(r.input("router", flat).to(at::kFloat), r.w.w("router").to(at::kFloat));
  Routing routing = sigmoid_group_topk(logits, r.w.a_opt("mlp.gate.e_score_correction_bias"), s);
  at::Tensor y = routed_experts(r, flat, routing, act);
  if (r.w.has("shared_experts.gate")) y = y + gated_mlp(r, "shared_experts", flat, act);
  return y.view(x.sizes());
}

}  // namespace moeq::fwd
