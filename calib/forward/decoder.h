#pragma once
// The layer-streaming driver every family shares, and the registry of families.
//
// A family (calib/forward/<family>.cpp) implements DecoderFamily: how ids become hidden
// states, what one decoder layer computes, and the head. The driver (StreamingForward) owns
// the loop: load one layer's weights to the device, run every chunk of samples through it,
// free it; hidden states of all samples stay on the device (or host).
#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "calib/forward.h"
#include "calib/forward/blocks.h"
#include "calib/forward/weights.h"
#include "model/config.h"

namespace moeq::fwd {

class DecoderFamily {
 public:
  virtual ~DecoderFamily() = default;
  // Called once per run before any layer: per-sequence tables (RoPE) for `seq` tokens.
  virtual void prepare(int64_t seq, const ForwardOptions& options) = 0;
  // The global sites / aux tensors (relative to the text prefix) the head needs; the driver
  // adds `embed_tokens` when the checkpoint has no lm_head (tied embeddings).
  virtual std::vector<std::string> global_sites() const { return {"lm_head"}; }
  virtual std::vector<std::string> global_aux() const { return {"norm.weight"}; }
  // ids [B, S] (int64, on the device) -> hidden [B, S, H] in the compute dtype.
  virtual at::Tensor embed(const LayerWeights& globals, const at::Tensor& ids) const;
  // One decoder layer over h [B, S, H].
  virtual at::Tensor layer(const LayerRun& run, const at::Tensor& h) const = 0;
  // Final norm and lm_head (observer sees lm_head's input): logits [B, S, V] float32, or an
  // undefined tensor when !run.want_logits.
  virtual at::Tensor head(const LayerRun& run, const at::Tensor& h) const = 0;
};

// Shared head for the Llama-style families: RMSNorm `norm.weight`, lm_head (or the tied
// embedding when the checkpoint has no lm_head), optional final logit soft-capping.
at::Tensor standard_head(const LayerRun& run, const at::Tensor& h, double eps, RmsStyle style, double softcap = 0);

// Config helpers that name the config file and key when something is missing.
double config_double(const ModelConfig& c, const std::string& key, double fallback);
bool config_bool(const ModelConfig& c, const std::string& key, bool fallback);
std::string config_string(const ModelConfig& c, const std::string& key, const std::string& fallback);
// rope_theta: rope_parameters.rope_theta (transformers 5.x), else top-level rope_theta.
double rope_theta(const ModelConfig& c, double fallback);
// Throws naming the config and key when rope_parameters.rope_type is not "default" (moeq
// implements only plain RoPE for these families).
void require_default_rope(const ModelConfig& c, const std::string& family);

using FamilyFactory = std::function<std::unique_ptr<DecoderFamily>(const ModelConfig&)>;
bool register_forward(const std::string& family, std::vector<std::string> model_types, FamilyFactory make);

}  // namespace moeq::fwd

// Registers a family's decoder from its own file:
//   MOEQ_FORWARD("Qwen3-MoE", make_qwen3_moe, "qwen3_moe");
#define MOEQ_FWD_CONCAT_INNER(a, b) a##b
#define MOEQ_FWD_CONCAT(a, b) MOEQ_FWD_CONCAT_INNER(a, b)
#define MOEQ_FORWARD(family, factory, ...)                                \
  static const bool MOEQ_FWD_CONCAT(moeq_forward_registered_, __LINE__) = \
      ::moeq::fwd::register_forward(family, {__VA_ARGS__}, factory)
