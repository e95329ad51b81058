#pragma once
// Building blocks of the native MoE forward, shared by the families: norms, rotary
// embeddings, attention, routers, grouped experts. Each is checked against transformers
// through the per-family logits tests (tests/calib/test_forward_*.cpp).
#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <vector>

#include "calib/forward.h"
#include "calib/forward/weights.h"
#include "model/decoder_spec.h"

namespace moeq::fwd {

// ---- norms (RmsStyle: model/decoder_spec.h). `w` may be undefined (no scale).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps, RmsStyle style = RmsStyle::CastThenScale);

// ---- rotary embeddings: cos/sin tables [seq, head_dim] (float32 math, cast to dtype)
// inv_freq [head_dim / 2] (float32, CPU).
at::Tensor default_inv_freq(double theta, int64_t head_dim);
// Gemma4's "proportional" RoPE: the first partial * head_dim / 2 frequencies rotate (with
// exponents over the full head_dim), the rest are 0 (cos 1, sin 0: those dims pass through).
at::Tensor proportional_inv_freq(double theta, int64_t head_dim, double partial, double factor = 1.0);
struct Rope {
  at::Tensor cos, sin;  // [seq, head_dim]
};
Rope make_rope(const at::Tensor& inv_freq, int64_t seq, at::Device device, at::ScalarType dtype, double scaling = 1.0);
// x [B, S, heads, D] (half-split rotation, `rotate_half` convention).
at::Tensor apply_rope(const at::Tensor& x, const Rope& r);

// ---- attention: q [B, Hq, S, D], k/v [B, Hkv, S, D] (grouped-query when Hkv < Hq).
// Causal; `window` > 0 also limits each query to the last `window` keys (itself included).
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale, int64_t window = 0);

// ---- activations by config name (silu, gelu_pytorch_tanh, gelu)
using Activation = std::function<at::Tensor(const at::Tensor&)>;
Activation activation(const std::string& name);

// ---- routers
struct Routing {
  at::Tensor ids;      // [T, k] int64
  at::Tensor weights;  // [T, k] float32
};
// softmax(logits) in float32, top-k, optional renormalization of the k weights to sum 1.
Routing softmax_topk(const at::Tensor& logits, int64_t k, bool renormalize);

// ---- grouped expert GEMMs
// How the experts' GEMMs run: at::_grouped_mm (CUDA, bf16, K and N multiples of 8, so rows
// and strides are 16-byte aligned) or a loop of per-expert GEMMs (CPU, other dtypes/shapes).
class ExpertGemm {
 public:
  // x [R, K] rows grouped by expert (counts [E] int64 rows each), w [E, N, K]: y [R, N].
  at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& counts, bool force_loop = false);
  // "grouped (at::_grouped_mm)", "per-expert loop (...)", or both when layers differed.
  std::string description() const;

 private:
  std::vector<std::string> used_;
  bool reported_ = false;
};

// Everything a family's layer function needs beside the hidden states.
struct LayerRun {
  const LayerWeights& w;
  ActivationObserver* observer;  // may be null
  const ForwardOptions& options;
  ExpertGemm& gemm;
  // The head computes logits only when someone wants them (calibration needs only the
  // observer's view of lm_head's input: no [tokens, vocab] GEMM and float32 logits).
  bool want_logits = true;
  int64_t layer() const { return w.layer; }
  // y = x @ W^T for the site `key` of this layer (+ bias `bias_key` when that aux exists), on
  // input(key, x).
  at::Tensor linear(const std::string& key, const at::Tensor& x, const std::string& bias_key = "") const;
  // x as the linear `key` consumes it: options.input_transform applied when set (and `key` is a
  // site of this layer), else x itself. For linears a family multiplies without linear().
  at::Tensor input(const std::string& key, const at::Tensor& x) const;
  // Tells the observer the input x [..., in] shared by the sites `keys` (missing keys skipped).
  void observe(const std::vector<std::string>& keys, const at::Tensor& x) const;
};

// A gated MLP down(act(gate(x)) * up(x)) on the sites `<prefix>.gate/up/down` (dense MLPs,
// shared experts); the observer sees gate/up's shared input and down's input.
at::Tensor gated_mlp(const LayerRun& r, const std::string& prefix, const at::Tensor& x, const Activation& act);

// Routed experts over x [T, H] with the router's decisions: rows sorted by expert, one grouped
// GEMM for gate_up and one for down, outputs weighted by the routing weights and summed per
// token (float32 accumulation). Calls observer->router and ->expert_input; with
// options.all_experts_see_all_tokens every expert runs on every token (the observer sees
// E x T rows) and the output still takes the top-k.
at::Tensor routed_experts(const LayerRun& r, const at::Tensor& x, const Routing& routing, const Activation& act);

// Experts whose math differs from act(gate) * up without biases (gpt-oss: biased projections,
// clamped SwiGLU). Biases follow the stacked layout: gate_up_bias [E, 2I] gate then up.
struct ExpertMath {
  std::function<at::Tensor(const at::Tensor& gate, const at::Tensor& up)> glu;
  at::Tensor gate_up_bias;  // [E, 2I] or undefined
  at::Tensor down_bias;     // [E, H] or undefined
};
at::Tensor routed_experts(const LayerRun& r, const at::Tensor& x, const Routing& routing, const ExpertMath& math);

}  // namespace moeq::fwd
