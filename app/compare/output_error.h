#pragma once
// Output error of a fake-quantized model against the unquantized one, from the logits of
// both on the same ids. Every metric is over the positions that predict a next token
// (0 .. S-2 of each sample), so perplexity and the distribution metrics count the same tokens.
#include <ATen/ATen.h>

#include <cstdint>

namespace moeq {

// Running sums over tokens, in double (per-token values are computed in float32 on the
// logits' device, then summed in double).
struct OutputErrorSums {
  int64_t tokens = 0;
  double kl = 0;        // sum of KL(P_ref || P_quant) per token, nats
  double kl_max = 0;    // worst token
  int64_t top1 = 0;     // tokens whose argmax agrees
  double nll_ref = 0;   // -log P_ref(next token)
  double nll_quant = 0;
  double cosine = 0;    // cosine of the two logit vectors per token
};

struct OutputError {
  bool measured = false;
  int64_t tokens = 0;
  double kl_mean = 0, kl_max = 0, top1 = 0, cosine_mean = 0;
  double ppl_ref = 0, ppl_quant = 0, ppl_delta = 0;  // exp(mean NLL); delta = quant - ref
};

// Adds one chunk: ref and quant logits [n, S, V] (any float dtype, same device), ids [n, S]
// int64 (any device; ids[:, 1:] are the targets). Throws moeq::Error on shape mismatch.
void accumulate_output_error(const at::Tensor& ref_logits, const at::Tensor& quant_logits, const at::Tensor& ids,
                             OutputErrorSums* sums);
OutputError finish_output_error(const OutputErrorSums& sums);

}  // namespace moeq
