#pragma once
// An architecture's decoder as a value: which blocks the native forward assembles and the
// knobs each takes. A plugin (plugins/<family>.cpp) fills one from the checkpoint's config;
// calib/forward/decoder.h (assemble_decoder) builds the forward from it. Ground floor: no ATen,
// no calib/.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace moeq {

// How an RMSNorm applies its weight. Llama/Qwen: normalize in float32, cast back, then
// multiply by the weight in the compute dtype. Gemma: multiply in float32, then cast.
enum class RmsStyle { CastThenScale, ScaleThenCast };

enum class QkNorm {
  None,
  PerHead,  // RMSNorm over head_dim of each head (Qwen3, Gemma4): self_attn.{q,k}_norm.weight [D]
  Full,     // RMSNorm over the whole q / k projection output (OLMoE): [heads * D]
};

// Self-attention of the Llama family and its variants on the sites attn.q/k/v/o.
struct AttnSpec {
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  double scale = 1.0;       // multiplies q.k (head_dim^-0.5 for most; 1.0 for Gemma4)
  int64_t window = 0;       // sliding window (0: full causal)
  QkNorm qk_norm = QkNorm::None;
  double eps = 1e-6;
  RmsStyle style = RmsStyle::CastThenScale;
  double clip_qkv = 0;      // OLMoE: clamp q, k, v to [-clip, clip] after the norms (0: off)
  bool v_norm = false;      // Gemma4: scale-free RMSNorm of v per head
  bool k_eq_v = false;      // Gemma4 attention_k_eq_v: no v_proj, v is k's projection
  int64_t rotary_dim = 0;   // rotate only the first rotary_dim dims of each head (0: all; GLM-4 MoE)
  bool sinks = false;       // gpt-oss: per-head softmax sinks `self_attn.sinks` [heads]
};

// Multi-head latent attention (DeepSeek-V3): q_a/q_b (or q without q_lora), kv_a, kv_b, o.
struct LatentAttnSpec {
  int64_t heads = 0, q_lora = 0, kv_lora = 0, nope = 0, rope_dim = 0, v_dim = 0;
  double eps = 1e-6;       // the q_a / kv_a latent norms
  bool interleave = true;  // RoPE on interleaved pairs (rope_interleave)
};

// Gated delta-net linear attention (Qwen3.5): key / value heads and their dims.
struct LinearAttnSpec {
  int64_t k_heads = 0, v_heads = 0, dk = 0, dv = 0;
};

// The RoPE table of one layer kind.
struct RopeSpec {
  enum class Kind {
    Default,       // theta over `dim`
    Proportional,  // Gemma4: the first partial * dim / 2 frequencies rotate
    FromConfig,    // rope_parameters / rope_scaling of the config (default or YaRN) over `dim`
  };
  Kind kind = Kind::Default;
  double theta = 10000.0;
  int64_t dim = 0;
  double partial = 1.0, factor = 1.0;  // Proportional only
};

enum class AttentionKind {
  Self,        // AttnSpec
  Latent,      // LatentAttnSpec
  GatedSelf,   // Qwen3.5 full attention: q_proj gives [q | gate] per head, output * sigmoid(gate)
  GatedDelta,  // Qwen3.5 linear attention: LinearAttnSpec
};


enum class RouterKind {
  SoftmaxTopk,       // softmax, top-k, optional renormalization (Qwen3, OLMoE, Mixtral)
  SigmoidGroupTopk,  // DeepSeek-V3 / GLM-4: sigmoid, biased choice within expert groups
  TopkThenSoftmax,   // gpt-oss: biased router, top-k logits, softmax over those k
};

struct RouterSpec {
  RouterKind kind = RouterKind::SoftmaxTopk;
  int64_t top_k = 0;
  bool renormalize = false;             // top-k weights renormalized to sum 1
  bool round_weights_to_dtype = false;  // routing weights cast to the compute dtype (Qwen3, OLMoE)
  int64_t n_group = 1, topk_group = 1;  // SigmoidGroupTopk
  double scaling = 1.0;                 // SigmoidGroupTopk: routed_scaling_factor
};

// Where AWQ's per-input-channel scales fold exactly (calib/calibrators/awq_norm.h, docs/awq.md):
// a norm whose output only `readers` consume. With the norm's weight divided by s (w / s, or for
// a (1 + w) norm (1 + w) / s - 1) and every reader's input columns multiplied by s, the layer
// computes the same function. Keys are relative to the layer: the norm's aux tensor
// ("post_attention_layernorm.weight") and the readers' site keys ("router",
// "shared_experts.gate", "attn.q"); "experts.gate" / "experts.up" stand for every routed expert's. A reader
// key with no site in a layer is skipped (a family's optional shared expert). A family whose math
// allows no exact fold leaves `norm` empty and says why in `why_not`: a plan that needs the fold
// refuses with that line.
struct NormFold {
  std::string norm;
  bool one_plus = false;
  std::vector<std::string> readers;
  std::string why_not = "the family declares no AWQ norm fold (model/decoder_spec.h NormFold)";
  bool allowed() const { return !norm.empty(); }
};

// Where AWQ's scales of o_proj's input fold (docs/awq.md): o's input channel (h, d) is head h's
// attention-weighted sum of channel d of v of its kv head g = h / (heads / kv_heads), so v_proj's
// row (g, d) and its bias divided by s[g, d], and o_proj's columns (h, d) multiplied by s[g, d],
// leave the layer's function unchanged, provided nothing between v_proj and that sum acts on v's
// channels other than linearly. Keys relative to the layer: the sites `v` and `o`, v's bias
// tensor `v_bias` (absent in the checkpoint: no bias). calib/calibrators/awq_attn.cpp also refuses
// what the attention spec makes inexact (v_norm, k_eq_v, clip_qkv).
struct VoFold {
  std::string v, o, v_bias;
  std::string why_not = "the family declares no AWQ v_proj -> o_proj fold (model/decoder_spec.h VoFold)";
  bool allowed() const { return why_not.empty(); }
};

// What one kind of layer (a `layer_types` entry) attends with.
struct LayerKind {
  AttentionKind attention = AttentionKind::Self;
  AttnSpec attn;
  LatentAttnSpec latent;
  LinearAttnSpec linear;
  RopeSpec rope;
  NormFold attn_input;  // AWQ: the norm before attention and the sites that read it ("attn.q", ...)
  VoFold attn_output;   // AWQ: o_proj's input folded into v_proj's rows
};

struct FeedForwardSpec {
  std::string act = "silu";
  NormFold expert_input;  // the norm the routed experts' gate/up read
  RouterSpec router;
  std::string shared_prefix;  // shared-expert sites (empty: none)
  double swiglu_limit = 0;    // gpt-oss: clamped SwiGLU with biased experts (0: act(gate) * up)
};

// How a layer composes attention and feed-forward.
enum class DecoderLayout {
  PreNorm,   // h += attn(norm(h)); h += ffn(norm(h))
  Sandwich,  // Gemma4: pre/post norms around attention, a dense MLP beside the experts
  Hybrid,    // Qwen3.5: (1 + weight) norms, linear or gated full attention, gated shared expert
};

struct DecoderSpec {
  std::string family;
  DecoderLayout layout = DecoderLayout::PreNorm;
  RmsStyle norm = RmsStyle::CastThenScale;  // layer and final norms (PreNorm)
  double eps = 1e-6;
  // Layer kinds by name; layer_types names one per layer. Without layer_types every layer
  // is kinds.at(kUniformLayers).
  std::map<std::string, LayerKind> kinds;
  std::vector<std::string> layer_types;
  FeedForwardSpec ffn;
  double logit_softcap = 0;  // final logit soft-capping (0: off)

  static constexpr const char* kUniformLayers = "all";
};

}  // namespace moeq
