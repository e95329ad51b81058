#pragma once
// GPTQ Hessians, accumulated during the calibration forward, in float32 on the forward's device,
// written as H = sum / n (calib/hessian_file.h):
//  - routed experts: for each MoE layer, expert and expert input (gate_up: the input gate and up
//    share; down), the sum of 2 x x^T over the rows routed to that expert;
//  - every other linear the forward reports (linear_input: attention, shared experts, dense
//    MLPs, ...; not routers): one sum of 2 x x^T over all rows per reported input, which the
//    sites reported together share (q, k and v one; o its own).
// A layer's accumulators move to the host when the forward reports another layer, so one
// layer's Hessians are on the device at a time. Every call is also passed on to `next` (the
// StatsObserver of the same run).
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
  // The same for a non-expert linear site ([in, in], rows): the input it shares with the sites
  // reported beside it.
  std::pair<at::Tensor, int64_t> linear_sums(const std::string& site) const;

 private:
  struct Acc {
    at::Tensor sum;              // [E, in, in] float32
    std::vector<int64_t> rows;   // [E]
  };
  struct LinearAcc {
    at::Tensor sum;                  // [in, in] float32
    int64_t rows = 0;
    int64_t layer = -1;
    std::vector<std::string> sites;  // the sites that read this input (the first names it)
  };
  void to_host_except(int64_t layer);
  ActivationObserver* next_;
  std::map<std::pair<int64_t, std::string>, Acc> acc_;
  std::map<std::string, LinearAcc> linear_;      // by the first site's name
  std::map<std::string, std::string> input_of_;  // site name -> key of linear_
  int64_t device_layer_ = -1;  // the layer whose accumulators are on the device
};

}  // namespace moeq
