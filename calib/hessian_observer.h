#pragma once
// GPTQ Hessians of routed experts, accumulated during the calibration forward: for each MoE
// layer, expert and expert input (gate_up: the input gate and up share; down), the sum of
// 2 x x^T over the rows routed to that expert, in float32 on the forward's device; written as
// H = sum / n (calib/hessian_file.h). A layer's accumulators move to the host when the forward
// reports the next layer, so one layer's Hessians are on the device at a time. Every call is
// also passed on to `next` (the StatsObserver of the same run).
#include <ATen/ATen.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "calib/forward.h"

namespace moeq {

class HessianObserver : public ActivationObserver {
 public:
  explicit HessianObserver(ActivationObserver* next) : next_(next) {}
  void linear_input(const std::vector<const Site*>& sites, const at::Tensor& x) override;
  void expert_input(int64_t layer, const std::string& proj, const at::Tensor& x, const at::Tensor& expert_of_row,
                    const at::Tensor& counts) override;
  void router(int64_t layer, const at::Tensor& topk_ids, const at::Tensor& topk_weights) override;

  // Writes the side file atomically (a temporary beside it, renamed). Throws moeq::Error when
  // the forward reported no expert input or a Hessian holds NaN/Inf (naming layer and input).
  void write(const std::string& path, const std::string& model_fingerprint) const;

  // The accumulated sum of 2 x x^T ([E, in, in], float32, CPU) and the rows per expert (tests).
  std::pair<at::Tensor, std::vector<int64_t>> sums(int64_t layer, const std::string& input) const;

 private:
  struct Acc {
    at::Tensor sum;              // [E, in, in] float32
    std::vector<int64_t> rows;   // [E]
  };
  ActivationObserver* next_;
  std::map<std::pair<int64_t, std::string>, Acc> acc_;
  int64_t device_layer_ = -1;  // the layer whose accumulators are on the device
};

}  // namespace moeq
