#include "app/run/stages.h"

#include "calib/calibrators/gptq_job.h"
#include "core/error.h"

namespace moeq {

at::Device checked_device(const std::string& device) {
  if (device != "cpu" && device != "cuda") throw Error("--device must be cpu or cuda, got '" + device + "'");
  if (device == "cuda" && !at::hasCUDA()) throw Error("--device cuda: no CUDA device is available (use --device cpu)");
  return device == "cuda" ? at::Device(at::kCUDA) : at::Device(at::kCPU);
}

CalibData read_calib_for(const std::string& path, const Model& model) {
  CalibData calib = read_calib_file(path);
  require_calib_matches(calib, path, model.config, *model.checkpoint, model.dir);
  return calib;
}

std::shared_ptr<const HessianFile> attach_hessians_for(Plan& plan, const std::string& calib_path, const Model& model) {
  const std::string fingerprint = plan_uses_gptq(plan) ? model_fingerprint(model.config, *model.checkpoint) : std::string();
  return attach_hessians_for(plan, calib_path, fingerprint);
}

}  // namespace moeq
