#pragma once
// The pre-norm decoder most MoE families share:
//   h += attn(input_layernorm(h));  h += moe_or_mlp(post_attention_layernorm(h))
// with a softmax top-k router (`router` site), routed experts, optional shared experts
// (sites `<shared_prefix>.gate/up/down`), and a dense MLP (`mlp.*`) on layers without a
// router. Families fill a LlamaMoeSpec from their config (calib/forward/<family>.cpp).
#include <string>

#include "calib/forward/attention.h"
#include "calib/forward/decoder.h"

namespace moeq::fwd {

struct LlamaMoeSpec {
  std::string family;
  AttnSpec attn;
  double eps = 1e-6;
  double rope_theta = 10000.0;
  std::string act = "silu";
  int64_t top_k = 0;
  bool renormalize = false;            // top-k weights renormalized to sum 1
  bool round_weights_to_dtype = false; // routing weights cast to the compute dtype (Qwen3, OLMoE)
  std::string shared_prefix;           // shared-expert sites (empty: none)
};

class LlamaMoeFamily : public DecoderFamily {
 public:
  explicit LlamaMoeFamily(LlamaMoeSpec spec) : spec_(std::move(spec)) {}
  void prepare(int64_t seq, const ForwardOptions& options) override;
  at::Tensor layer(const LayerRun& run, const at::Tensor& h) const override;
  at::Tensor head(const LayerRun& run, const at::Tensor& h) const override;

 protected:
  // The MoE (or dense MLP) half of a layer over its normed input x [B, S, H].
  virtual at::Tensor feed_forward(const LayerRun& run, const at::Tensor& x) const;
  LlamaMoeSpec spec_;
  Rope rope_;
};

// The fields every Llama-style config has (heads, head_dim, eps, rope theta, activation,
// top-k); the family sets the rest.
LlamaMoeSpec llama_moe_spec(const ModelConfig& c, const std::string& family);

}  // namespace moeq::fwd
