#include "calib/forward/blocks.h"

#include <algorithm>
#include <iostream>

#include "calib/forward/stage_timer.h"
#include "core/error.h"

namespace moeq::fwd {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps, RmsStyle style) {
  if (style == RmsStyle::CastThenScale) {
    // at::rms_norm normalizes in float32 and casts back (one fused kernel on a GPU), as
    // (x * rsqrt(mean(x^2) + eps)).to(dtype) does in several.
    at::Tensor n = at::rms_norm(x, {x.size(-1)}, std::nullopt, eps);
    return w.defined() ? w * n : n;
  }
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor n = xf * at::pow(xf.pow(2).mean(-1, true) + eps, -0.5);
  if (w.defined()) n = n * w.to(at::kFloat);
  return n.to(x.scalar_type());
}

at::Tensor default_inv_freq(double theta, int64_t head_dim) {
  at::Tensor e = at::arange(0, head_dim, 2, at::kFloat) / static_cast<double>(head_dim);
  return 1.0 / at::pow(theta, e);
}

at::Tensor proportional_inv_freq(double theta, int64_t head_dim, double partial, double factor) {
  const int64_t rope_angles = static_cast<int64_t>(partial * head_dim / 2);
  at::Tensor e = at::arange(0, 2 * rope_angles, 2, at::kLong).to(at::kFloat) / static_cast<double>(head_dim);
  at::Tensor f = 1.0 / at::pow(theta, e);
  const int64_t nope = head_dim / 2 - rope_angles;
  if (nope > 0) f = at::cat({f, at::zeros({nope}, at::kFloat)});
  return f / factor;
}

Rope make_rope(const at::Tensor& inv_freq, int64_t seq, at::Device device, at::ScalarType dtype, double scaling) {
  at::Tensor pos = at::arange(seq, at::kFloat);
  at::Tensor freqs = at::outer(pos, inv_freq.to(at::kFloat));
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  return Rope{(emb.cos() * scaling).to(device, dtype), (emb.sin() * scaling).to(device, dtype)};
}

at::Tensor apply_rope(const at::Tensor& x, const Rope& r) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor rot = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  at::Tensor c = r.cos.unsqueeze(1), s = r.sin.unsqueeze(1);  // [S, 1, D] against [B, S, heads, D]
  return x * c + rot * s;
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale, int64_t window) {
  const int64_t S = q.size(2);
  if (window > 0 && window < S) {
    at::Tensor i = at::arange(S, q.options().dtype(at::kLong)).unsqueeze(1);
    at::Tensor j = at::arange(S, q.options().dtype(at::kLong)).unsqueeze(0);
    at::Tensor allowed = (j <= i).logical_and(i - j < window);
    return at::scaled_dot_product_attention(q, k, v, allowed, 0.0, false, scale, /*enable_gqa=*/true);
  }
  return at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true, scale, /*enable_gqa=*/true);
}

Activation activation(const std::string& name) {
  if (name == "silu" || name == "swish") return [](const at::Tensor& x) { return at::silu(x); };
  if (name == "gelu_pytorch_tanh" || name == "gelu_new") return [](const at::Tensor& x) { return at::gelu(x, "tanh"); };
  if (name == "gelu") return [](const at::Tensor& x) { return at::gelu(x); };
  throw Error("native forward: unsupported activation '" + name + "' (supported: silu, gelu, gelu_pytorch_tanh)");
}

Routing softmax_topk(const at::Tensor& logits, int64_t k, bool renormalize) {
  at::Tensor probs = at::softmax(logits.to(at::kFloat), -1);
  auto [vals, ids] = at::topk(probs, k, -1);
  if (renormalize) vals = vals / vals.sum(-1, true);
  return Routing{ids, vals};
}

at::Tensor ExpertGemm::linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& counts, bool force_loop) {
  const int64_t R = x.size(0), N = w.size(1), K = w.size(2);
  std::string why;
  if (force_loop) why = "forced";
  else if (!x.is_cuda()) why = "CPU";
  else if (x.scalar_type() != at::kBFloat16) why = std::string(c10::toString(x.scalar_type())) + " (at::_grouped_mm needs bfloat16)";
  else if (K % 8 != 0 || N % 8 != 0)
    why = "K=" + std::to_string(K) + ", N=" + std::to_string(N) + " are not multiples of 8 (16-byte aligned rows)";
  if (why.empty()) {
    const std::string used = "grouped (at::_grouped_mm)";
    if (used_.empty() || used_.back() != used) used_.push_back(used);
    if (R == 0) return at::empty({0, N}, x.options());
    at::Tensor offs = counts.cumsum(0).to(at::kInt);
    return at::_grouped_mm(x.contiguous(), w.transpose(1, 2), offs);
  }
  const std::string used = "per-expert loop (" + why + ")";
  if (std::find(used_.begin(), used_.end(), used) == used_.end()) used_.push_back(used);
  if (x.is_cuda() && !force_loop && !reported_) {
    std::cerr << "moeq forward: experts on the GPU run as a " << used << ", not as one grouped GEMM\n";
    reported_ = true;
  }
  at::Tensor out = at::empty({R, N}, x.options());
  at::Tensor c = counts.to(at::kCPU);
  const int64_t* cp = c.data_ptr<int64_t>();
  int64_t start = 0;
  for (int64_t e = 0; e < c.size(0); ++e) {
    if (cp[e] == 0) continue;
    at::Tensor dst = out.narrow(0, start, cp[e]);
    at::mm_out(dst, x.narrow(0, start, cp[e]), w[e].t());
    start += cp[e];
  }
  if (start != R) throw Error("native forward: expert row counts sum to " + std::to_string(start) + ", not " + std::to_string(R));
  return out;
}

std::string ExpertGemm::description() const {
  std::string s;
  for (const auto& u : used_) s += (s.empty() ? "" : "; ") + u;
  return s.empty() ? "none (no routed experts)" : s;
}

at::Tensor LayerRun::linear(const std::string& key, const at::Tensor& x, const std::string& bias_key) const {
  at::Tensor b = bias_key.empty() ? at::Tensor() : w.a_opt(bias_key);
  return at::linear(input(key, x), w.w(key), b.defined() ? std::optional<at::Tensor>(b) : std::nullopt);
}

at::Tensor LayerRun::input(const std::string& key, const at::Tensor& x) const {
  if (!options.input_transform) return x;
  const Site* s = w.site(key);
  if (!s) return x;
  at::Tensor y = options.input_transform(*s, x);
  if (!y.defined() || y.sizes() != x.sizes())
    throw Error("native forward: input_transform returned a tensor of another shape for the input of site '" + s->name + "'");
  return y;
}

void LayerRun::observe(const std::vector<std::string>& keys, const at::Tensor& x) const {
  if (!observer) return;
  std::vector<const Site*> sites;
  for (const auto& k : keys)
    if (const Site* s = w.site(k)) sites.push_back(s);
  if (sites.empty()) return;
  StageScope t("statistics", x.device());
  observer->linear_input(sites, x.reshape({-1, x.size(-1)}));
}

at::Tensor gated_mlp(const LayerRun& r, const std::string& p, const at::Tensor& x, const Activation& act) {
  r.observe({p + ".gate", p + ".up"}, x);
  at::Tensor h = act(r.linear(p + ".gate", x)) * r.linear(p + ".up", x);
  r.observe({p + ".down"}, h);
  return r.linear(p + ".down", h);
}

at::Tensor routed_experts(const LayerRun& r, const at::Tensor& x, const Routing& routing, const Activation& act) {
  ExpertMath m;
  m.glu = [&act](const at::Tensor& g, const at::Tensor& u) { return act(g) * u; };
  return routed_experts(r, x, routing, m);
}

at::Tensor routed_experts(const LayerRun& r, const at::Tensor& x, const Routing& routing, const ExpertMath& math) {
  const ExpertStack& st = r.w.experts;
  if (!st.gate_up.defined())
    throw Error("native forward: layer " + std::to_string(r.layer()) + " is routed but has no expert weights");
  const int64_t T = x.size(0), E = st.num_experts(), k = routing.ids.size(1), I = st.inter();
  const at::Device dev = x.device();
  if (r.observer) {
    StageScope t("statistics", dev);
    r.observer->router(r.layer(), routing.ids, routing.weights);
  }
  auto lopt = x.options().dtype(at::kLong);
  const bool all = r.options.all_experts_see_all_tokens;
  at::Tensor xs, expert_of_row, counts, order, token;
  {
    StageScope t("experts: sort, gather", dev);
    if (!all) {
      at::Tensor flat = routing.ids.reshape(-1);
      order = at::argsort(flat, /*stable=*/true);
      expert_of_row = flat.index_select(0, order);
      token = at::div(order, k, "floor");
      counts = at::zeros({E}, lopt).scatter_add_(0, flat, at::ones_like(flat));  // bincount syncs (max().item())
      xs = x.index_select(0, token);
    } else {
      xs = x.repeat({E, 1});
      counts = at::full({E}, T, lopt);
      expert_of_row = at::arange(E, lopt).repeat_interleave(T);
    }
  }
  if (r.observer) {
    StageScope t("statistics", dev);
    r.observer->expert_input(r.layer(), "gate_up", xs, expert_of_row, counts);
  }
  // compare's activation fake quantization (ForwardOptions::expert_input_transform), if set
  auto expert_input = [&](const char* proj, const at::Tensor& in) {
    if (!r.options.expert_input_transform) return in;
    at::Tensor y = r.options.expert_input_transform(r.layer(), proj, in, expert_of_row);
    if (!y.defined() || y.sizes() != in.sizes())
      throw Error("native forward: expert_input_transform returned a tensor of another shape for layer " +
                  std::to_string(r.layer()) + " (" + proj + ")");
    return y;
  };
  at::Tensor h;
  {
    StageScope t("experts: gate_up GEMM", dev);
    at::Tensor gu = r.gemm.linear(expert_input("gate_up", xs), st.gate_up, counts);
    if (math.gate_up_bias.defined()) gu = gu + math.gate_up_bias.index_select(0, expert_of_row);
    h = math.glu(gu.narrow(1, 0, I), gu.narrow(1, I, I));
  }
  if (r.observer) {
    StageScope t("statistics", dev);
    r.observer->expert_input(r.layer(), "down", h, expert_of_row, counts);
  }
  at::Tensor y;
  {
    StageScope t("experts: down GEMM", dev);
    y = r.gemm.linear(expert_input("down", h).contiguous(), st.down, counts);
    if (math.down_bias.defined()) y = y + math.down_bias.index_select(0, expert_of_row);
  }
  StageScope t("experts: combine", dev);
  if (!all && routing.weights.scalar_type() == y.scalar_type()) {
    // Weights already in the compute dtype (rounded by the family): back to token order, then
    // one batched [1, k] x [k, H] product per token, accumulated in float32 by the GEMM.
    at::Tensor inv = at::empty_like(order).scatter_(0, order, at::arange(order.size(0), lopt));
    at::Tensor per_token = y.index_select(0, inv).view({T, k, y.size(1)});
    return at::bmm(routing.weights.unsqueeze(1), per_token).squeeze(1).to(x.scalar_type());
  }
  at::Tensor w = routing.weights.to(at::kFloat);
  at::Tensor out;
  if (!all) {
    at::Tensor contrib = y.to(at::kFloat) * w.reshape(-1).index_select(0, order).unsqueeze(1);
    out = at::zeros({T, y.size(1)}, x.options().dtype(at::kFloat)).index_add_(0, token, contrib);
  } else {
    at::Tensor rows = routing.ids * T + at::arange(T, lopt).unsqueeze(1);  // row of (token, expert) in y
    at::Tensor sel = y.index_select(0, rows.reshape(-1)).view({T, k, y.size(1)}).to(at::kFloat);
    out = (sel * w.unsqueeze(-1)).sum(1);
  }
  return out.to(x.scalar_type());
}

}  // namespace moeq::fwd
