#include "app/compare/output_error.h"

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "core/error.h"

namespace moeq {

void accumulate_output_error(const at::Tensor& ref_logits, const at::Tensor& quant_logits, const at::Tensor& ids,
                             OutputErrorSums* sums) {
  if (ref_logits.dim() != 3 || ref_logits.sizes() != quant_logits.sizes() || ids.dim() != 2 ||
      ids.size(0) != ref_logits.size(0) || ids.size(1) != ref_logits.size(1))
    throw Error("output error: logits must be [n, S, V] for both models and ids [n, S]; got reference " +
                std::to_string(ref_logits.dim()) + "D, quantized " + std::to_string(quant_logits.dim()) + "D, ids " +
                std::to_string(ids.dim()) + "D of other extents");
  const int64_t S = ref_logits.size(1);
  if (S < 2) throw Error("output error: sequences need at least 2 tokens (one prediction with its target)");
  const at::Tensor r = ref_logits.narrow(1, 0, S - 1).to(at::kFloat);
  const at::Tensor q = quant_logits.narrow(1, 0, S - 1).to(at::kFloat);
  const at::Tensor target = ids.narrow(1, 1, S - 1).to(r.device()).unsqueeze(-1);
  // With d = r - q (per vocabulary entry) and p = softmax(r):
  //   log p - log q = d - (lse(r) - lse(q)),  lse(q) - lse(r) = log sum_v p_v exp(-d_v)
  //   KL = sum_v p_v d_v + log1p(sum_v p_v expm1(-d_v))
  // Written this way float32 keeps KL accurate to ~1e-7 of sum p|d| instead of ~1e-7 of
  // |log p| (the subtraction of two log-softmaxes): near-lossless formats have KL ~1e-8
  // on the tiny models, below the latter. Identical logits give d = 0 and KL = 0 exactly.
  const at::Tensor lr = at::log_softmax(r, -1);
  const at::Tensor p = lr.exp();
  const at::Tensor d = r - q;
  const at::Tensor shift = at::log1p((p * at::expm1(-d)).sum(-1, true));  // lse(q) - lse(r), [n, S-1, 1]
  const at::Tensor kl = (p * d).sum(-1) + shift.squeeze(-1);
  sums->kl += kl.sum(at::kDouble).item<double>();
  sums->kl_max = std::max(sums->kl_max, kl.max().item<double>());
  sums->top1 += (r.argmax(-1) == q.argmax(-1)).sum().item<int64_t>();
  // NLL of the target under q = NLL under p + (log p - log q) at the target, same precision argument.
  const at::Tensor nll_ref = -lr.gather(-1, target);
  const at::Tensor delta = d.gather(-1, target) + shift;
  sums->nll_ref += nll_ref.sum(at::kDouble).item<double>();
  sums->nll_quant += (nll_ref.to(at::kDouble) + delta.to(at::kDouble)).sum().item<double>();
  // Dot and squared norms reduced in float32, combined in double: identical logits give
  // s / sqrt(s * s) = 1 exactly (s * s is exact in double). A zero logit vector is real: the
  // trained Qwen3-MoE's pad = EOS embedding is zero, and a window starting with it gives zero
  // hidden states and logits at position 0 in both models. Two zero vectors count as equal
  // (cosine 1), one zero vector against another as orthogonal (0), never 0/0 = NaN.
  const at::Tensor dot = (r * q).sum(-1).to(at::kDouble);
  const at::Tensor nr = (r * r).sum(-1).to(at::kDouble), nq = (q * q).sum(-1).to(at::kDouble);
  const at::Tensor norms = nr * nq;
  const at::Tensor both_zero = (nr == 0).logical_and(nq == 0).to(at::kDouble);
  const at::Tensor cosine = at::where(norms > 0, dot / norms.clamp_min(DBL_MIN).sqrt(), both_zero);
  sums->cosine += cosine.sum().item<double>();
  sums->tokens += r.size(0) * r.size(1);
}

OutputError finish_output_error(const OutputErrorSums& s) {
  OutputError o;
  if (s.tokens == 0) return o;
  const double n = static_cast<double>(s.tokens);
  o.measured = true;
  o.tokens = s.tokens;
  o.kl_mean = s.kl / n;
  o.kl_max = s.kl_max;
  o.top1 = static_cast<double>(s.top1) / n;
  o.cosine_mean = s.cosine / n;
  o.ppl_ref = std::exp(s.nll_ref / n);
  o.ppl_quant = std::exp(s.nll_quant / n);
  o.ppl_delta = o.ppl_quant - o.ppl_ref;
  return o;
}

}  // namespace moeq
