#pragma once
// Activation statistics for calibration: an ActivationObserver that keeps, on the
// forward's device, the amax of every linear site's input (per expert for routed experts,
// over the rows routed to that expert only), the rows each expert saw, and the router's
// load. Nothing syncs with the host until finish(): per-expert amax is one scatter_reduce
// over the rows' expert ids, not a loop over experts.
#include <ATen/ATen.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "calib/calib_file.h"
#include "calib/forward.h"

namespace moeq {

struct StatsOptions {
  bool channel_amax = false;  // also per-input-channel amax (off by default: [in] floats per site)
  // Called once per decoder layer, the first time the forward reports an input of it.
  std::function<void(int64_t layer)> on_layer;
};

// The rule for experts that received no token, as written into the file and the docs.
extern const char* const kFallbackRule;

class StatsObserver : public ActivationObserver {
 public:
  // `map` must outlive the observer (the forward's sites()).
  StatsObserver(const SiteMap& map, StatsOptions options = {});

  void linear_input(const std::vector<const Site*>& sites, const at::Tensor& x) override;
  void expert_input(int64_t layer, const std::string& proj, const at::Tensor& x, const at::Tensor& expert_of_row,
                    const at::Tensor& counts) override;
  void router(int64_t layer, const at::Tensor& topk_ids, const at::Tensor& topk_weights) override;

  // Copies the statistics to the host and builds the file contents: sites in site order;
  // experts with no rows get the fallback amax (flagged); gate and up of an expert share
  // the amax of their common input. Throws moeq::Error on non-finite activations (naming
  // the site), on an MoE layer where no expert received a token, and when the forward's
  // gate_up and down row counts disagree. Metadata fields are left to the caller.
  CalibData finish() const;

 private:
  void seen_layer(int64_t layer);
  struct ExpertAcc {
    at::Tensor amax;     // [E] float32
    at::Tensor rows;     // [E] int64
    at::Tensor channel;  // [E, in] float32 (channel_amax only)
  };
  struct RouterAcc {
    at::Tensor load;    // [E] int64
    at::Tensor weight;  // [E] float32
  };
  const SiteMap& map_;
  StatsOptions opt_;
  std::map<int64_t, int64_t> num_experts_;                 // MoE layer -> E (from the site map)
  std::map<std::string, at::Tensor> site_amax_;            // site name -> [] float32
  std::map<std::string, at::Tensor> site_channel_;         // site name -> [in] float32
  std::map<std::pair<int64_t, std::string>, ExpertAcc> experts_;  // (layer, "gate_up" | "down")
  std::map<int64_t, RouterAcc> routers_;
  int64_t last_layer_ = -1;
};

}  // namespace moeq
