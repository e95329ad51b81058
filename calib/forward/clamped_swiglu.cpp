#include "calib/forward/clamped_swiglu.h"

namespace moeq::fwd {
namespace {
constexpr double kAlpha = 1.702;  // fixed in gpt-oss (not a config key)
}  // namespace

at::Tensor clamped_swiglu_moe(const LayerRun& r, const at::Tensor& x, int64_t top_k, double limit) {
  at::Tensor flat = x.reshape({-1, x.size(-1)});
  r.observe({"router"}, flat);
  at::Tensor logits = r.linear("router", flat, "mlp.router.bias");
  auto [top, ids] = logits.topk(top_k, -1);
  Routing routing{ids, at::softmax(top, -1).to(at::kFloat)};
  ExpertMath m;
  m.glu = [limit](const at::Tensor& gate, const at::Tensor& up) {
    at::Tensor g = gate.clamp_max(limit);
    return (up.clamp(-limit, limit) + 1) * (g * at::sigmoid(g * kAlpha));
  };
  at::Tensor b = r.w.a("mlp.experts.gate_up_proj_bias");  // [E, 2I], gate and up interleaved
  m.gate_up_bias = at::cat({b.slice(1, 0, b.size(1), 2), b.slice(1, 1, b.size(1), 2)}, 1);
  m.down_bias = r.w.a("mlp.experts.down_proj_bias");
  return routed_experts(r, flat, routing, m).view(x.sizes());
}

}  // namespace moeq::fwd
