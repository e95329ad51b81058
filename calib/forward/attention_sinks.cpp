#include "calib/forward/attention_sinks.h"

#include <algorithm>
#include <limits>

#include "core/error.h"

namespace moeq::fwd {

at::Tensor attention_with_sinks(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                                int64_t window, const at::Tensor& sinks) {
  const int64_t Hq = q.size(1), Hkv = k.size(1), S = q.size(2);
  if (Hq % Hkv != 0 || sinks.numel() != Hq)
    throw Error("native forward: attention with sinks needs heads (" + std::to_string(Hq) + ") a multiple of kv heads (" +
                std::to_string(Hkv) + ") and one sink per head (got " + std::to_string(sinks.numel()) + ")");
  const at::Tensor kk = Hkv == Hq ? k : k.repeat_interleave(Hq / Hkv, 1);
  const at::Tensor vv = Hkv == Hq ? v : v.repeat_interleave(Hq / Hkv, 1);
  const at::Tensor sink = sinks.to(at::kFloat).view({1, Hq, 1, 1});
  at::Tensor out = at::empty({q.size(0), Hq, S, v.size(3)}, q.options());
  constexpr int64_t kBlock = 256;
  for (int64_t i0 = 0; i0 < S; i0 += kBlock) {
    const int64_t i1 = std::min(S, i0 + kBlock);
    const int64_t j0 = window > 0 ? std::max<int64_t>(0, i0 - window + 1) : 0;  // first key any query may see
    at::Tensor kb = kk.narrow(2, j0, i1 - j0), vb = vv.narrow(2, j0, i1 - j0);
    at::Tensor scores = at::matmul(q.narrow(2, i0, i1 - i0), kb.transpose(2, 3)).to(at::kFloat) * scale;
    auto lopt = q.options().dtype(at::kLong);
    at::Tensor i = at::arange(i0, i1, lopt).unsqueeze(1), j = at::arange(j0, i1, lopt).unsqueeze(0);
    at::Tensor allowed = j <= i;
    if (window > 0) allowed = allowed.logical_and(i - j < window);
    scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
    at::Tensor m = at::maximum(std::get<0>(scores.max(-1, true)), sink);
    at::Tensor p = (scores - m).exp();
    at::Tensor denom = p.sum(-1, true) + (sink - m).exp();
    out.narrow(2, i0, i1 - i0).copy_(at::matmul((p / denom).to(vb.scalar_type()), vb));
  }
  return out;
}

}  // namespace moeq::fwd
