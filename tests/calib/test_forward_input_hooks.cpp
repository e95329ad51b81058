// ForwardOptions::input_transform / expert_input_transform (compare --calib's activation fake
// quantization) on every family's tiny checkpoint: the hooks see the input of every linear the
// observer sees (dense sites one call each, routed experts per layer and projection), an
// identity hook leaves the logits bit for bit, and what a hook returns is what the linear uses.
#include <ATen/ATen.h>

#include <map>
#include <set>
#include <string>
#include <utility>

#include "calib/forward.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "test_util.h"
#include "tiny_families.h"

using namespace moeq;

namespace {

// The sites and (layer, projection) pairs whose inputs the forward reports to an observer.
struct SeenInputs : ActivationObserver {
  std::set<std::string> dense;
  std::set<std::pair<int64_t, std::string>> experts;
  void linear_input(const std::vector<const Site*>& sites, const at::Tensor&) override {
    for (const Site* s : sites) dense.insert(s->name);
  }
  void expert_input(int64_t layer, const std::string& proj, const at::Tensor&, const at::Tensor&, const at::Tensor&) override {
    experts.insert({layer, proj});
  }
  void router(int64_t, const at::Tensor&, const at::Tensor&) override {}
};

at::Tensor logits_of(const std::string& model, const at::Tensor& ids, const ForwardOptions& o, ActivationObserver* obs) {
  auto f = make_forward(Checkpoint::open(model), load_config(model), o);
  std::vector<at::Tensor> parts;
  f->run(ids, obs, [&](int64_t, const at::Tensor& l) { parts.push_back(l.clone()); });
  return at::cat(parts);
}

}  // namespace

TEST_CASE("forward input hooks: every linear input of every family, identity is exact", "[tiny]") {
  const std::string root = test::tiny_dir();
  for (const std::string& fam : test::tiny_families(/*with_forward=*/true)) {
    DYNAMIC_SECTION(fam) {
      const std::string model = root + "/" + fam + "/model";
      const ModelConfig cfg = load_config(model);
      const at::Tensor ids = at::arange(2 * 10, at::kLong).remainder(cfg.vocab_size).view({2, 10});
      ForwardOptions o;
      o.dtype = at::kFloat;
      SeenInputs seen;
      const at::Tensor ref = logits_of(model, ids, o, &seen);
      REQUIRE(!seen.dense.empty());
      REQUIRE(!seen.experts.empty());

      std::map<std::string, int> dense_calls;
      std::set<std::pair<int64_t, std::string>> expert_calls;
      o.input_transform = [&](const Site& s, const at::Tensor& x) {
        ++dense_calls[s.name];
        CHECK(x.size(-1) == s.view.cols);
        return x;
      };
      o.expert_input_transform = [&](int64_t layer, const std::string& proj, const at::Tensor& x, const at::Tensor& rows) {
        expert_calls.insert({layer, proj});
        CHECK(rows.size(0) == x.size(0));
        return x;
      };
      CHECK(at::equal(logits_of(model, ids, o, nullptr), ref));
      std::set<std::string> called;
      for (const auto& [name, n] : dense_calls) {
        called.insert(name);
        INFO(name);
        CHECK(n == 1);  // one chunk (2 samples, chunk_samples 8): one call per site
      }
      CHECK(called == seen.dense);
      CHECK(expert_calls == seen.experts);

      // What the hook returns is what the linears consume: zeroing every routed expert's down
      // input removes the routed experts' contribution, which changes the logits.
      o.input_transform = nullptr;
      o.expert_input_transform = [](int64_t, const std::string& proj, const at::Tensor& x, const at::Tensor&) {
        return proj == "down" ? at::zeros_like(x) : x;
      };
      CHECK_FALSE(at::allclose(logits_of(model, ids, o, nullptr), ref));
    }
  }
}
