#pragma once
// The first stage of `moeq quantize`: everything decided and checked before a byte is
// written (the recipe's plan, the export writer, the calibration it needs, the device), so a
// run that cannot succeed fails before it starts and --dry-run can print what it would do.
#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "app/run/quantize.h"
#include "calib/calib_file.h"
#include "calib/calibrators/awq_job.h"
#include "calib/calibrators/input_scales.h"
#include "calib/hessian_file.h"
#include "export/writer.h"
#include "model/model.h"
#include "recipe/recipe.h"

namespace moeq {

struct RunPlan {
  Recipe recipe;
  Plan plan;  // its sites point into the model's site map
  const ExportWriter* writer = nullptr;
  CalibData calib;                               // --calib's statistics (empty without it)
  std::map<std::string, InputScale> in_scales;   // per input_quant site
  std::vector<std::string> calib_warnings;
  std::shared_ptr<const HessianFile> hessians;   // null unless the plan uses gptq or awq
  std::shared_ptr<const AwqScales> awq;          // null unless the plan uses awq
  at::Device device = at::kCPU;
};

// Throws moeq::Error naming the recipe, the site or the file when the run would be refused.
RunPlan plan_quantize_run(const QuantizeOptions& opt, const Model& model);

}  // namespace moeq
