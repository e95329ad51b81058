#pragma once
// compare's output-error pass: the unquantized model and each variant's fake-quantized model
// (weights quantize-dequantized exactly as `moeq quantize` exports them) run the native
// forward on the same ids; their logits give KL, top-1 agreement, perplexity and cosine.
//
// Memory: the reference logits are kept on the host in float32 (exact: no rounding of the
// reference), for at most `ref_budget_bytes` at a time. Samples are processed in groups that
// fit that budget: per group the reference forward runs once, then every variant's forward,
// each consuming the group's reference chunk by chunk. One group when the budget allows;
// otherwise every group pays the weight loading (and quantization) again.
#include <ATen/ATen.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "app/compare/input_transform.h"
#include "app/compare/output_error.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "model/model.h"
#include "recipe/recipe.h"

namespace moeq {

using WeightTransform = std::function<at::Tensor(const Site&, const at::Tensor&)>;

// The forward's weight_transform for a plan: a quantized site gets its dequantized weight,
// computed like the export (its expert stack from the checkpoint, gate/up sharing the
// per-tensor amax, the same format kernel on `device`); a site the plan leaves unquantized
// keeps the forward's own weight, unchanged. The dequantized stacks of one job are cached
// until all their sites were served (the forward loads one layer at a time).
// With AWQ (calib/calibrators/awq_fold.h), the unquantized readers of a folded norm (router,
// shared experts) get their folded weight, cast to the source dtype as the export holds it.
WeightTransform plan_weight_transform(std::shared_ptr<Checkpoint> ckpt, const Plan& plan, const at::Device& device);

using AuxTransform = std::function<at::Tensor(const std::string& tensor, const at::Tensor&)>;
// The forward's aux_transform for a plan: AWQ's folded norms as the export holds them (source
// dtype); null when the plan folds no norm.
AuxTransform plan_aux_transform(const Model& model, const Plan& plan);

struct EvalOptions {
  at::Tensor ids;                        // [N, S] int64
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kBFloat16;  // the forward's compute dtype
  int64_t chunk_samples = 8;
  int64_t ref_budget_bytes = int64_t(4) << 30;
  std::vector<AuxTransform> aux;  // empty, or one per weight transform (null entries: none)
};

struct EvalResult {
  std::vector<OutputError> variants;  // in the order of the transforms
  int64_t groups = 0, samples_per_group = 0;
  double seconds = 0;
  std::string expert_gemm;
};

// Runs the reference (no transform) and one forward per transform. `inputs` is empty or holds,
// per transform, the input transforms of its forward (compare --calib: activation fake
// quantization, app/compare/input_transform.h; unset functions leave the inputs alone). Throws
// moeq::Error when the family has no native forward.
// Every forward reuses the model's site map.
EvalResult evaluate_outputs(const Model& model, const std::vector<WeightTransform>& transforms, const EvalOptions& opt,
                            const std::vector<InputTransforms>& inputs = {});
// The same for an open checkpoint and its config (its sites are mapped once).
EvalResult evaluate_outputs(std::shared_ptr<Checkpoint> ckpt, const ModelConfig& cfg,
                            const std::vector<WeightTransform>& transforms, const EvalOptions& opt,
                            const std::vector<InputTransforms>& inputs = {});

}  // namespace moeq
