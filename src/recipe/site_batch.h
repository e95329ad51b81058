#pragma once
// A batch of planned sites quantized in one call (an expert stack, or a batch of one). The
// quantize run groups a plan into jobs of batches (app/run/batches.h: plan_jobs); the
// calibrators below the run (calib/calibrators/) take a job as these batches.
#include <string>
#include <vector>

#include "recipe/recipe.h"

namespace moeq {

struct SiteBatch {
  std::vector<const SitePlan*> sites;
  std::string key;
};

}  // namespace moeq
