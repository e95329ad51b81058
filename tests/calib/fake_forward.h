#pragma once
// A stand-in for the native forward in the calibration tests: it reports, for a real
// checkpoint's site map, random inputs of every linear with known statistics (in the
// order and shapes the native forward uses), so the observer, calib.h5 and quantize
// --calib can be tested without a forward pass. Expert `unused_expert` of layer
// `unused_layer` never receives a token (to exercise the fallback rule).
#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <tuple>

#include "calib/forward.h"
#include "io/checkpoint.h"
#include "model/plugin.h"

namespace moeq::test {

class SiteFakeForward : public MoeForward {
 public:
  SiteFakeForward(SiteMap map, int64_t top_k, uint64_t seed) : map_(std::move(map)), top_k_(top_k), seed_(seed) {}
  static std::unique_ptr<SiteFakeForward> for_model(const std::string& dir, uint64_t seed) {
    const ModelConfig cfg = load_config(dir);
    auto ck = Checkpoint::open(dir);
    return std::make_unique<SiteFakeForward>(map_sites(plugin_for(cfg), cfg, *ck), std::max<int64_t>(1, cfg.num_experts_per_tok), seed);
  }

  int64_t unused_layer = -1, unused_expert = -1;
  int64_t tokens_per_chunk = 12, chunks = 2;

  ForwardStats run(const at::Tensor&, ActivationObserver* obs,
                   const std::function<void(int64_t, const at::Tensor&)>&) override {
    at::manual_seed(seed_);
    // Non-expert sites sharing an input: (layer, role, expert, in, kind) where q/k/v and
    // gate/up share a kind.
    std::map<std::tuple<int64_t, int, int64_t, int64_t, std::string>, std::vector<const Site*>> groups;
    std::map<int64_t, int64_t> experts;                        // layer -> E
    std::map<int64_t, std::pair<int64_t, int64_t>> expert_in;  // layer -> (hidden, inter)
    for (const auto& s : map_.sites) {
      if (s.role == Role::Embedding) continue;
      if (s.role == Role::Expert) {
        experts[s.layer] = std::max(experts[s.layer], s.expert + 1);
        auto& io = expert_in[s.layer];
        (s.proj == "down" ? io.second : io.first) = s.view.cols;
        continue;
      }
      const bool shared = s.proj == "q" || s.proj == "k" || s.proj == "v" || s.proj == "gate" || s.proj == "up";
      groups[{s.layer, static_cast<int>(s.role), s.expert, s.view.cols, shared ? "in" : s.proj}].push_back(&s);
    }
    for (int64_t c = 0; c < chunks; ++c) {
      for (const auto& [key, sites] : groups)
        obs->linear_input(sites, at::randn({tokens_per_chunk, std::get<3>(key)}).mul(1.0 + std::get<0>(key)).to(at::kBFloat16));
      for (const auto& [layer, E] : experts) {
        at::Tensor ids = at::randint(E, {tokens_per_chunk, top_k_}, at::kLong);
        if (layer == unused_layer) ids = at::where(ids == unused_expert, (ids + 1) % E, ids);
        const at::Tensor w = at::softmax(at::randn({tokens_per_chunk, top_k_}), 1);
        obs->router(layer, ids, w);
        const at::Tensor flat = ids.reshape({-1});
        const at::Tensor order = at::argsort(flat);
        const at::Tensor expert_of_row = flat.index_select(0, order);
        const at::Tensor counts = at::bincount(flat, {}, E);
        const auto [hidden, inter] = expert_in.at(layer);
        obs->expert_input(layer, "gate_up", at::randn({flat.size(0), hidden}).mul(2.0).to(at::kBFloat16), expert_of_row, counts);
        obs->expert_input(layer, "down", at::randn({flat.size(0), inter}).mul(0.5).to(at::kBFloat16), expert_of_row, counts);
      }
    }
    return {0, 0.01, tokens_per_chunk * chunks};
  }
  const SiteMap& sites() const override { return map_; }

 private:
  SiteMap map_;
  int64_t top_k_;
  uint64_t seed_;
};

}  // namespace moeq::test
