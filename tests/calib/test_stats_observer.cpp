// The statistics observer against hand-derived values: a fake forward reports known
// inputs for a one-layer model (q/k/v/o, a router, 4 experts of which expert 1 receives
// no token), in two chunks.
#include <ATen/ATen.h>

#include <catch2/catch_approx.hpp>

#include "calib/stats_observer.h"
#include "test_util.h"

using namespace moeq;

namespace {

Site site(const std::string& name, Role role, int64_t expert, const std::string& proj, int64_t in) {
  Site s;
  s.name = name;
  s.role = role;
  s.layer = 0;
  s.expert = expert;
  s.proj = proj;
  s.module = "model.layers.0." + name;
  s.view.cols = in;
  return s;
}

SiteMap one_layer() {
  SiteMap m;
  m.sites.push_back(site("embed", Role::Embedding, -1, "embed", 2));
  m.sites.back().layer = -1;
  for (const char* p : {"q", "k", "v", "o"}) m.sites.push_back(site(std::string("attn.") + p, Role::Attention, -1, p, 2));
  m.sites.push_back(site("router", Role::Router, -1, "router", 2));
  for (int e = 0; e < 4; ++e)
    for (const char* p : {"gate", "up", "down"})
      m.sites.push_back(site("experts." + std::to_string(e) + "." + p, Role::Expert, e, p, 2));
  return m;
}

at::Device g_dev = at::kCPU;  // where HandForward's tensors live (CPU, and CUDA when present)
at::Tensor t(std::vector<float> v, int64_t rows) { return at::tensor(v).reshape({rows, -1}).to(g_dev); }
at::Tensor ids(std::vector<int64_t> v) { return at::tensor(v, at::kLong).to(g_dev); }

// Two chunks: tokens t0 -> experts {0, 2}, t1 -> {0, 3}; then t2 -> {0, 3}. Expert 1 gets none.
class HandForward : public MoeForward {
 public:
  explicit HandForward(at::ScalarType dt) : dt_(dt), map_(one_layer()) {}
  ForwardStats run(const at::Tensor&, ActivationObserver* o, const std::function<void(int64_t, const at::Tensor&)>&) override {
    const Site* q = &map_.sites[1];
    const Site* k = &map_.sites[2];
    const Site* v = &map_.sites[3];
    const Site* out = &map_.sites[4];
    // chunk 1
    o->linear_input({q, k, v}, t({1, -5, 2, 3}, 2).to(dt_));
    o->linear_input({out}, t({-0.5, 0.25, 0.125, 0}, 2).to(dt_));
    o->router(0, t({0, 2, 0, 3}, 2).to(at::kLong), t({0.75, 0.25, 0.5, 0.5}, 2));
    // rows grouped by expert: e0 (t0, t1), e2 (t0), e3 (t1)
    o->expert_input(0, "gate_up", t({1, -2, 0.5, 0.5, -9, 1, 3, 3}, 4).to(dt_), ids({0, 0, 2, 3}), ids({2, 0, 1, 1}));
    o->expert_input(0, "down", t({0.125, 0, 0, -0.0625, 0.25, 0.375, 0.1875, 0}, 4).to(dt_), ids({0, 0, 2, 3}), ids({2, 0, 1, 1}));
    // chunk 2
    o->linear_input({q, k, v}, t({7, 0}, 1).to(dt_));
    o->linear_input({out}, t({0.0625, 0}, 1).to(dt_));
    o->router(0, t({0, 3}, 1).to(at::kLong), t({0.5, 0.5}, 1));
    o->expert_input(0, "gate_up", t({-4, 0, 1, -1}, 2).to(dt_), ids({0, 3}), ids({1, 0, 0, 1}));
    o->expert_input(0, "down", t({0.5, 0, 0, 0.125}, 2).to(dt_), ids({0, 3}), ids({1, 0, 0, 1}));
    return {};
  }
  const SiteMap& sites() const override { return map_; }

 private:
  at::ScalarType dt_;
  SiteMap map_;
};

const CalibSite& get(const CalibData& d, const std::string& name) {
  const CalibSite* s = d.find(name);
  INFO(name);
  REQUIRE(s != nullptr);
  return *s;
}

}  // namespace

TEST_CASE("stats observer: amax per site and per expert, counts, router load, fallback", "[calib]") {
  std::vector<at::Device> devices = {at::kCPU};
  if (at::hasCUDA()) devices.push_back(at::Device(at::kCUDA));  // the segment amax's CUDA kernel
  for (const at::Device dev : devices)
  for (at::ScalarType dt : {at::kFloat, at::kBFloat16}) {  // every value above is exact in bf16
    g_dev = dev;
    INFO(dev << " " << dt);
    HandForward fwd(dt);
    StatsOptions so;
    so.channel_amax = true;
    StatsObserver obs(fwd.sites(), so);
    fwd.run(at::Tensor(), &obs, {});
    const CalibData d = obs.finish();

    // q/k/v share one input: max |x| over both chunks = 7; o's input: 0.5.
    for (const char* p : {"attn.q", "attn.k", "attn.v"}) {
      CHECK(get(d, p).amax == 7.0f);
      CHECK(get(d, p).channel_amax == std::vector<float>{7, 5});
      CHECK_FALSE(get(d, p).fallback);
    }
    CHECK(get(d, "attn.o").amax == 0.5f);
    CHECK(get(d, "attn.o").module == "model.layers.0.attn.o");
    // gate_up: e0 rows (1,-2) (.5,.5) (-4,0) -> 4; e2 (-9,1) -> 9; e3 (3,3) (1,-1) -> 3.
    // Expert 1 saw nothing: fallback = the largest of the others = 9.
    const float gate_up[4] = {4, 9, 9, 3};
    const float down[4] = {0.5f, 0.5f, 0.375f, 0.1875f};
    for (int e = 0; e < 4; ++e) {
      const std::string p = "experts." + std::to_string(e) + ".";
      INFO("expert " << e);
      CHECK(get(d, p + "gate").amax == gate_up[e]);
      CHECK(get(d, p + "up").amax == gate_up[e]);  // gate and up share their input
      CHECK(get(d, p + "gate").channel_amax == get(d, p + "up").channel_amax);
      CHECK(get(d, p + "down").amax == down[e]);
      CHECK(get(d, p + "gate").fallback == (e == 1));
      CHECK(get(d, p + "down").fallback == (e == 1));
    }
    CHECK(get(d, "experts.0.gate").channel_amax == std::vector<float>{4, 2});
    CHECK(get(d, "experts.1.gate").channel_amax == std::vector<float>{9, 3});  // max over experts 0, 2, 3 per channel
    CHECK(get(d, "experts.1.down").channel_amax == std::vector<float>{0.5f, 0.375f});
    CHECK(d.fallbacks().size() == 3);
    CHECK(d.fallback_rule == kFallbackRule);

    REQUIRE(d.layers.size() == 1);
    CHECK(d.layers[0].layer == 0);
    CHECK(d.layers[0].tokens_per_expert == std::vector<int64_t>{3, 0, 1, 2});
    CHECK(d.layers[0].router_load == std::vector<int64_t>{3, 0, 1, 2});
    const std::vector<float> weight = {1.75f, 0, 0.25f, 1.0f};
    for (int e = 0; e < 4; ++e) CHECK(d.layers[0].router_weight[e] == Catch::Approx(weight[e]));
    // The router's input was not reported; the embedding has no activation input.
    CHECK(d.unobserved == std::vector<std::string>{"router"});
    CHECK(d.find("embed") == nullptr);
  }
}

TEST_CASE("stats observer: channel amax is off by default", "[calib]") {
  HandForward fwd(at::kFloat);
  StatsObserver obs(fwd.sites());
  fwd.run(at::Tensor(), &obs, {});
  for (const auto& s : obs.finish().sites) CHECK(s.channel_amax.empty());
}

TEST_CASE("stats observer: progress once per layer, non-finite inputs, empty layers and wrong shapes are errors", "[calib]") {
  const SiteMap map = one_layer();
  std::vector<int64_t> layers;
  StatsOptions so;
  so.on_layer = [&](int64_t l) { layers.push_back(l); };
  {
    StatsObserver obs(map, so);
    obs.linear_input({&map.sites[1]}, t({1, NAN}, 1));
    obs.linear_input({&map.sites[1]}, t({1, 2}, 1));
    CHECK(layers == std::vector<int64_t>{0});
    obs.expert_input(0, "gate_up", t({1, 1}, 1), ids({0}), ids({1, 0, 0, 0}));
    obs.expert_input(0, "down", t({1, 1}, 1), ids({0}), ids({1, 0, 0, 0}));
    REQUIRE_ERROR_MENTIONS(obs.finish(), "attn.q", "NaN or Inf");
  }
  {
    StatsObserver obs(map);  // a NaN in an expert row is not lost in the segment max
    obs.expert_input(0, "gate_up", t({1, 1, INFINITY, 0}, 2), ids({0, 2}), ids({1, 0, 1, 0}));
    obs.expert_input(0, "down", t({1, 1, 1, 1}, 2), ids({0, 2}), ids({1, 0, 1, 0}));
    REQUIRE_ERROR_MENTIONS(obs.finish(), "expert 2 of layer 0", "gate_up", "NaN or Inf");
    StatsObserver nan(map);
    nan.expert_input(0, "gate_up", t({1, 1, NAN, 0}, 2), ids({0, 2}), ids({1, 0, 1, 0}));
    nan.expert_input(0, "down", t({1, 1, 1, 1}, 2), ids({0, 2}), ids({1, 0, 1, 0}));
    REQUIRE_ERROR_MENTIONS(nan.finish(), "expert 2 of layer 0", "gate_up", "NaN or Inf");
  }
  {
    StatsObserver obs(map);
    obs.expert_input(0, "gate_up", at::zeros({0, 2}), ids({}), ids({0, 0, 0, 0}));
    REQUIRE_ERROR_MENTIONS(obs.finish(), "no expert of layer 0 received a token");
  }
  {
    StatsObserver obs(map);
    REQUIRE_ERROR_MENTIONS(obs.expert_input(0, "gate_up", t({1, 1}, 1), ids({0}), ids({1, 0, 0, 0, 0})), "5 experts", "layer 0",
                           "has 4");
    REQUIRE_ERROR_MENTIONS(obs.expert_input(0, "w13", t({1, 1}, 1), ids({0}), ids({1, 0, 0, 0})), "w13");
    REQUIRE_ERROR_MENTIONS(obs.router(3, ids({0}).reshape({1, 1}), t({1}, 1)), "layer 3");
  }
  {
    StatsObserver obs(map);  // gate_up and down row counts must agree
    obs.expert_input(0, "gate_up", t({1, 1}, 1), ids({0}), ids({1, 0, 0, 0}));
    obs.expert_input(0, "down", t({1, 1}, 1), ids({1}), ids({0, 1, 0, 0}));
    REQUIRE_ERROR_MENTIONS(obs.finish(), "layer 0", "gate_up and down");
  }
}
