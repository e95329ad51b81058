#pragma once
// The decoder interface the layer-streaming driver runs, and its assembly from an
// architecture's DecoderSpec (model/decoder_spec.h, filled by plugins/<family>.cpp).
//
// A layout (pre_norm_decoder, sandwich_decoder, hybrid_decoder) implements DecoderFamily:
// how ids become hidden states, what one decoder layer computes, and the head. The driver
// (StreamingForward) owns the loop: load one layer's weights to the device, run every chunk
// of samples through it, free it; hidden states of all samples stay on the device (or host).
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "calib/forward.h"
#include "calib/forward/blocks.h"
#include "calib/forward/weights.h"
#include "model/config.h"
#include "model/config_keys.h"
#include "model/decoder_spec.h"

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

// The layouts (model/decoder_spec.h DecoderLayout), each in its own file. `config` is the
// checkpoint's: RopeSpec::Kind::FromConfig reads its rope_parameters.
std::unique_ptr<DecoderFamily> make_pre_norm_decoder(const DecoderSpec& spec, const ModelConfig& config);
std::unique_ptr<DecoderFamily> make_sandwich_decoder(const DecoderSpec& spec, const ModelConfig& config);
std::unique_ptr<DecoderFamily> make_hybrid_decoder(const DecoderSpec& spec, const ModelConfig& config);
// The one that spec.layout names.
std::unique_ptr<DecoderFamily> assemble_decoder(const DecoderSpec& spec, const ModelConfig& config);

}  // namespace moeq::fwd
