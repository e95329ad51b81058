#pragma once
// Native libtorch forward of an MoE decoder, used by calibration (activation statistics)
// and by compare (output error of a fake-quantized model). One decoder layer's weights are
// on the device at a time (loaded from the checkpoint's mmap, used, freed); the hidden
// states of all samples stay on the device (or on the host when they do not fit).
//
// Each architecture (plugins/<family>.cpp) declares its decoder as a DecoderSpec
// (model/decoder_spec.h); calib/forward assembles it from the shared blocks.
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/config.h"
#include "model/site.h"

namespace moeq {

// Receives the input of every linear site as the forward computes it. Inputs are on the
// forward's device, in its compute dtype; an observer must not keep references to them.
class ActivationObserver {
 public:
  virtual ~ActivationObserver() = default;
  // x [tokens, in]: the input shared by `sites` (q/k/v share one input, so do a dense
  // MLP's gate/up). Called once per layer per chunk of samples.
  virtual void linear_input(const std::vector<const Site*>& sites, const at::Tensor& x) = 0;
  // Routed experts of `layer`. `proj` is "gate_up" (input of gate and up: they share it by
  // construction) or "down". x [rows, in] holds the rows routed to each expert, grouped by
  // expert in ascending order; expert_of_row [rows] (int64) names each row's expert and
  // counts [num_experts] (int64) the rows per expert.
  virtual void expert_input(int64_t layer, const std::string& proj, const at::Tensor& x,
                            const at::Tensor& expert_of_row, const at::Tensor& counts) = 0;
  // Router decisions of `layer`: topk_ids [tokens, k] (int64), topk_weights [tokens, k].
  virtual void router(int64_t layer, const at::Tensor& topk_ids, const at::Tensor& topk_weights) = 0;
};

struct ForwardOptions {
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kBFloat16;  // compute dtype (weights are cast to it)
  int64_t chunk_samples = 8;             // samples per layer call (bounds activation memory)
  // Statistics only: every expert also sees every token (its input statistics cover all
  // tokens), while the forward's output still uses the router's top-k. Trade-off: the
  // statistics of rarely routed experts become meaningful (an expert that sees few or no
  // calibration tokens otherwise gets no or noisy ranges), but they describe inputs the
  // expert never receives in deployment (tokens the router sends elsewhere), which can
  // widen ranges; and it costs E/k times the expert compute and E x tokens rows of expert
  // activations per chunk (lower chunk_samples for large E).
  bool all_experts_see_all_tokens = false;
  // Keep hidden states on the host between layers (for runs whose activations do not fit).
  bool hidden_on_host = false;
  // Optional: replaces a linear weight (already on the device, [out, in]) before use, e.g.
  // by quantize-dequantize for compare's fake-quantized model.
  std::function<at::Tensor(const Site&, const at::Tensor&)> weight_transform;
  // Optional: replaces an aux tensor (a norm weight, ...; by its stored name, on the device)
  // before use, e.g. by compare's AWQ-folded norm (calib/calibrators/awq_fold.h). Must keep the shape.
  std::function<at::Tensor(const std::string& tensor, const at::Tensor&)> aux_transform;
  // Optional: replace the input of a linear before it is multiplied, e.g. by compare's
  // activation fake quantization (W4A4 / W8A8). Unset: the inputs are used as they are, at
  // no cost. Called after the observer saw the unchanged input; must return x's shape.
  //  input_transform(site, x): x [..., in], the input of the dense linear `site` (every
  //    linear of a layer or head but the routed experts; sites sharing an input get a call
  //    each, so each can use its own scale).
  //  expert_input_transform(layer, proj, x, expert_of_row): the routed experts of `layer`,
  //    proj "gate_up" (the input gate and up share) or "down"; x [rows, in] grouped by
  //    expert, expert_of_row [rows] int64 names each row's expert.
  std::function<at::Tensor(const Site&, const at::Tensor&)> input_transform;
  std::function<at::Tensor(int64_t layer, const std::string& proj, const at::Tensor& x, const at::Tensor& expert_of_row)>
      expert_input_transform;
};

struct ForwardStats {
  // Peak allocated on the device during run(): the CUDA caching allocator's peak on a GPU;
  // on the CPU, the peak of the bytes the forward itself holds (hidden states, one layer's
  // weights, one chunk's activations are not counted).
  int64_t peak_device_bytes = 0;
  double seconds = 0;
  int64_t tokens = 0;
  // How routed experts were multiplied: "grouped (at::_grouped_mm)" or "per-expert loop
  // (<why>)"; the first fallback on a GPU is also printed once to stderr.
  std::string expert_gemm;
};

class MoeForward {
 public:
  virtual ~MoeForward() = default;
  // Runs all decoder layers over ids [samples, seq] (int64, no padding). The observer (may
  // be null) sees every linear input. When on_logits is set, it receives the logits
  // [chunk samples, seq, vocab] (float32) of each chunk, starting at sample `first`.
  virtual ForwardStats run(const at::Tensor& ids, ActivationObserver* observer,
                           const std::function<void(int64_t first, const at::Tensor& logits)>& on_logits) = 0;
  virtual const SiteMap& sites() const = 0;
};

// The forward for the checkpoint's family. Throws moeq::Error naming the family when moeq has
// no native forward for it (the list of families with one is in the message).
std::unique_ptr<MoeForward> make_forward(std::shared_ptr<Checkpoint> ckpt, const ModelConfig& config,
                                         const ForwardOptions& options);

}  // namespace moeq
