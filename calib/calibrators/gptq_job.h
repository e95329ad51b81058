#pragma once
// `calibrator: gptq` in the quantize pipeline (docs/gptq.md): a job's expert stacks get the
// format's max-path scales (NVFP4 block + global scales, gate/up sharing the global amax;
// INT4/INT8 symmetric group scales), then GPTQ (calib/calibrators/gptq.h) with the experts' Hessians from
// the side file, then the format writes the bytes of the GPTQ weights with those same scales.
// Experts with fewer than min_tokens routed calibration rows, or whose Hessian is not positive
// definite after damping, keep the plain path's bytes and are listed (HessianFile::fallbacks).
#include <memory>
#include <optional>
#include <vector>

#include "recipe/site_batch.h"
#include "calib/hessian_file.h"
#include "recipe/recipe.h"

namespace moeq {

// Whether a quantized site's calibrator needs the Hessians (gptq or awq).
bool plan_uses_gptq(const Plan& plan);

// Gives every gptq / awq site of the plan the Hessians. Throws moeq::Error naming the site when a
// non-expert site other than attention uses awq, or a non-expert site uses gptq / awq with a
// version 1 Hessian file (experts only).
void attach_hessians(Plan& plan, const std::shared_ptr<const HessianFile>& hessians);

// For quantize / compare: when the plan uses gptq, opens CALIB.hessians.safetensors (calib_path
// empty: an error saying gptq needs --calib) and attaches it; returns it (null without gptq).
std::shared_ptr<const HessianFile> attach_hessians_for(Plan& plan, const std::string& calib_path,
                                                       const std::string& model_fingerprint);

// The job's results (one per batch), as quantize_job returns them.
std::vector<QuantizedTensor> gptq_quantize_job(const std::vector<SiteBatch>& job, const std::vector<at::Tensor>& stacks,
                                               const std::optional<at::Tensor>& amax);

}  // namespace moeq
