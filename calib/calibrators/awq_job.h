#pragma once
// `calibrator: awq` in the quantize pipeline (docs/awq.md). Routed experts only, on down_proj's
// input, whose scales fold exactly: down's input channel j is act(gate_j) * up_j, so
//   down[:, j] *= s_j  and  up[j, :] /= s_j   (per expert)
// leave the layer's function unchanged before quantization. The scales come from a pass before
// the quantize jobs (attach_awq_scales): per MoE layer, the down stacks, their Hessians
// (CALIB.hessians.safetensors, as GPTQ's) and mean|x| approximated by sqrt(diag(H) / 2) (the
// RMS of the routed inputs; the Hessian file keeps no mean |x|), then ModelOpt awq_lite's grid
// search (calib/calibrators/awq.h) with the down format's own max-path fake quantization.
// The jobs then fold (awq_fold_stacks) and quantize with the format's max path. gate_up's input
// (the norm output shared by every expert, the router and any shared expert) gets one scale per
// layer (calib/calibrators/awq_norm.h, searched after down's, on the up rows down's fold left),
// folded into the norm with every reader compensated (calib/calibrators/awq_fold.h). The
// down scales are then
// renormalised (any constant factor gives down the same error) so that the folded up keeps its
// amax: gate and up share one NVFP4 global scale.
// Experts with fewer than min_tokens routed rows, and experts whose best loss is not below
// s = 1's, keep s = 1 (listed in fallbacks()).
// The export keeps the scales in moeq_awq/scales.safetensors (not read by consumers: the
// weights already hold them), so verify --source can compare with the folded source.
#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "calib/calibrators/awq_fold.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "model/model.h"
#include "recipe/recipe.h"
#include "recipe/site_batch.h"

namespace moeq {

class AwqScales {
 public:
  struct Layer {
    at::Tensor scales;  // [E, in] float32 (CPU): 1 where no search ran or it did not help
    at::Tensor alpha;   // [E] float32: the chosen alpha, -1 for s = 1
    at::Tensor gain;    // [E] float32: loss(best) / loss(s = 1) (1 for s = 1)
    // gate/up's shared input (undefined when not searched): [in] float32, 1 where it did not help.
    at::Tensor gate_up;
    double gate_up_alpha = -1, gate_up_gain = 1;
    AwqNormFold norm;  // where gate_up folds (resolved from the model's plugin)
    // Attention (undefined when not searched; calib/calibrators/awq_attn.h): attn_in [hidden]
    // divides the input norm's output (folded into that norm, its readers' columns x s); attn_o
    // [heads * head_dim] divides o_proj's input (folded into v_proj's rows and bias).
    at::Tensor attn_in, attn_o;
    double attn_in_alpha = -1, attn_in_gain = 1, attn_o_alpha = -1, attn_o_gain = 1;
    AwqNormFold attn_norm;  // where attn_in folds
    AwqVoFold vo;           // where attn_o folds
  };
  std::map<int64_t, Layer> layers;
  std::vector<std::string> fallbacks;
  // [in] float32 of one expert's down input; undefined when the layer has no scales.
  at::Tensor expert_scales(int64_t layer, int64_t expert) const;
};

// Relative path of the scales inside an export.
extern const char* const kAwqScalesFile;

bool plan_uses_awq(const Plan& plan);

// For every layer with awq down sites: the scales (the sites' Hessians must be attached:
// attach_hessians_for), attached to the plan's awq sites. Throws moeq::Error naming the site
// when an awq down site's up is not quantized with awq too (the fold needs both), or an awq rule
// decided a site that is not a routed expert. Null without awq.
// cfg: the model's config (a clamped activation, gpt-oss's swiglu_limit, is refused: no exact fold).
// Sites that only read a folded norm (router, shared experts) get the scales too, so their jobs
// fold; one quantized with gptq gets the folded Hessian S^-1 H S^-1 (gptq_job.cpp).
std::shared_ptr<const AwqScales> attach_awq_scales(Plan& plan, const Model& model, const at::Device& dev);

// A job's stacks with the scales folded in (float32 where folded; others as given).
std::vector<at::Tensor> awq_fold_stacks(const std::vector<SiteBatch>& job, const std::vector<at::Tensor>& stacks);
// One site's [out, in] weight folded as the export holds it (unchanged for other sites).
at::Tensor awq_fold_weight(const AwqScales& a, const Site& site, const at::Tensor& w);

void write_awq_scales(const AwqScales& a, const std::string& export_dir);
// The scales an export holds, or null when it has none. With `source`, the gate_up folds are
// resolved against it (verify --source).
std::shared_ptr<const AwqScales> read_awq_scales(const std::string& export_dir, const Model* source = nullptr);

}  // namespace moeq
