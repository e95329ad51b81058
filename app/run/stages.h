#pragma once
// The stages of a run that `moeq quantize` and `moeq compare` share, between opening the model
// (model/model.h: open_model) and quantizing its jobs (app/run/batches.h): the device, the
// calibration file checked against the model, and the GPTQ Hessians beside it.
#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "calib/calib_file.h"
#include "calib/hessian_file.h"
#include "model/model.h"
#include "recipe/recipe.h"

namespace moeq {

// "cpu" or "cuda" (with a CUDA device present); anything else is a moeq::Error.
at::Device checked_device(const std::string& device);

// The calibration file at `path`, refused (moeq::Error) unless it was made for this model.
CalibData read_calib_for(const std::string& path, const Model& model);

// When the plan uses gptq: the Hessians beside `calib_path` (calib/calibrators/gptq_job.h),
// attached to the plan's gptq sites; null without gptq.
std::shared_ptr<const HessianFile> attach_hessians_for(Plan& plan, const std::string& calib_path, const Model& model);

}  // namespace moeq
