#pragma once
// Loading one decoder layer's weights (or the model's global ones) onto the forward's device,
// through the plugin's SiteMap: linear weights by canonical site name, routed experts stacked
// per projection, and aux tensors (norms, scales, biases) by stored name.
#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "calib/forward.h"
#include "io/checkpoint.h"
#include "model/site.h"

namespace moeq::fwd {

// Routed experts of one layer, stacked as the grouped GEMM wants them.
struct ExpertStack {
  at::Tensor gate_up;  // [E, 2I, H]: gate rows then up rows of each expert
  at::Tensor down;     // [E, H, I]
  // The sites of expert e: gate_sites[e], up_sites[e], down_sites[e] (for weight_transform).
  std::vector<const Site*> gate_sites, up_sites, down_sites;
  int64_t num_experts() const { return gate_up.defined() ? gate_up.size(0) : 0; }
  int64_t inter() const { return down.size(2); }
};

// Weights of one decoder layer (or of the globals, layer = -1), on the device in the compute
// dtype. Keys of `linear`/`sites` are canonical site names without the `layers.L.` prefix
// (`attn.q`, `router`, `mlp.gate`, `shared_experts.up`); keys of `aux` are stored tensor names
// without the layer prefix (`input_layernorm.weight`, `self_attn.q_norm.weight`).
struct LayerWeights {
  int64_t layer = -1;
  std::map<std::string, at::Tensor> linear;
  std::map<std::string, const Site*> sites;
  std::map<std::string, at::Tensor> aux;
  std::map<std::string, std::string> aux_tensor;  // aux key -> stored tensor name
  ExpertStack experts;

  // Throw moeq::Error naming the layer, the key and the keys present when missing.
  const at::Tensor& w(const std::string& key) const;
  const at::Tensor& a(const std::string& key) const;
  // Undefined tensor when missing.
  at::Tensor w_opt(const std::string& key) const;
  at::Tensor a_opt(const std::string& key) const;
  bool has(const std::string& key) const { return linear.count(key) > 0; }
  const Site* site(const std::string& key) const;
  int64_t bytes() const;
};

// Loading runs in two steps so that a GPU forward can overlap it with compute
// (calib/forward/prefetch.h): stage (host only, thread-safe: the checkpoint's mmap is copied into
// contiguous tensors in the compute dtype, pinned when the device is a GPU, expert stacks built
// there, copies spread over the intra-op threads), then upload (device copies, non-blocking from
// pinned memory, on the calling thread's current stream) and transform (options.weight_transform
// per site, on the device). load_* do all three.
class WeightLoader {
 public:
  WeightLoader(std::shared_ptr<Checkpoint> ckpt, const SiteMap& sites, const ForwardOptions& options);
  // Everything of decoder layer `layer`.
  LayerWeights load_layer(int64_t layer) const;
  // Sites outside the decoder layers by name (`embed_tokens`, `lm_head`) and aux tensors by name
  // relative to the text model's prefix (`norm.weight`). Missing names are skipped, not errors
  // (a tied lm_head has no tensor of its own); the family checks what it needs.
  LayerWeights load_globals(const std::vector<std::string>& site_names, const std::vector<std::string>& aux_names) const;

  LayerWeights stage_layer(int64_t layer) const;
  LayerWeights stage_globals(const std::vector<std::string>& site_names, const std::vector<std::string>& aux_names) const;
  // Host tensors -> options.device (non_blocking: the caller orders the stream).
  LayerWeights upload(const LayerWeights& staged) const;
  // Applies options.weight_transform to every linear weight (no-op without one).
  void transform(LayerWeights& w) const;
  // `model.` or `model.language_model.`: where the text model's tensors live.
  const std::string& text_prefix() const { return prefix_; }

 private:
  struct Copy {
    at::Tensor dst, src;
  };
  // A host tensor of `shape` in the compute dtype (pinned for a GPU forward) filled from `src`
  // by run_copies; on a CPU forward whose dtype matches a contiguous `src`, `src` itself.
  at::Tensor host_for(const at::Tensor& src, std::vector<Copy>& copies) const;
  void run_copies(std::vector<Copy>& copies) const;
  std::shared_ptr<Checkpoint> ckpt_;
  const SiteMap& sites_;
  const ForwardOptions& options_;
  std::string prefix_;
};

}  // namespace moeq::fwd
