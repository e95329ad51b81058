// End to end: the real calibrate path (native forward + statistics observer + calib.h5) on
// each family's tiny checkpoint with the fixed ids of tests/python/forward_oracle.py, against
// the amax and tokens per expert that transformers' float32 forward gives
// (<tiny>/<fam>/forward_oracle.safetensors: `ids`, `amax.<module>`, `tokens.<L>`).
// Skips (saying why) while moeq has no native forward for a family. Runs on MOEQ_TEST_DEVICE
// (cpu by default, or cuda).
#include <ATen/ATen.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "calib/calibrate.h"
#include "calib/forward.h"
#include "tensor/aten_view.h"
#include "io/checkpoint.h"
#include "model/plugin.h"
#include "test_util.h"
#include "tiny_families.h"

using namespace moeq;
namespace fs = std::filesystem;

namespace {
// float32 forward vs transformers float32: the same math in another order.
constexpr double kRelTol = 1e-4;
}  // namespace

TEST_CASE("calibrate: per-site amax and tokens per expert equal transformers' (forward oracle)", "[forward]") {
  // The forward oracle fixture's directory (tests/CMakeLists.txt sets MOEQ_FORWARD_DIR for [forward] tests).
  const char* fwd_dir = std::getenv("MOEQ_FORWARD_DIR");
  const std::string root = fwd_dir ? std::string(fwd_dir) : test::tiny_dir();
  const char* dev = std::getenv("MOEQ_TEST_DEVICE");
  test::TempDir tmp;
  std::vector<std::string> ran, skipped;
  for (const std::string& fam : test::tiny_families(/*with_forward=*/true)) {
    const std::string oracle_path = root + "/" + fam + "/forward_oracle.safetensors";
    const std::string model = root + "/" + fam + "/model";
    if (!fs::exists(oracle_path)) {
      skipped.push_back(std::string(fam) + ": no " + oracle_path + " (tests/python/forward_oracle.py writes it)");
      continue;
    }
    CalibrateOptions o;
    o.model = model;
    o.device = dev ? dev : "cpu";
    o.dtype = "f32";
    o.chunk = 2;
    o.progress = false;
    {
      ForwardOptions fo;
      fo.dtype = at::kFloat;
      try {
        make_forward(Checkpoint::open(model), load_config(model), fo);
      } catch (const Error& e) {
        skipped.push_back(std::string(fam) + ": " + e.what());
        continue;
      }
    }
    ran.push_back(fam);
    auto oracle = Checkpoint::open_file(oracle_path);
    const at::Tensor ids = tensor_view(*oracle, "ids").clone();
    const std::string path = tmp.path + "/" + fam + ".h5";
    write_calib_file(path, calibrate_ids(o, ids, "forward_oracle ids"));
    const CalibData d = read_calib_file(path);  // through the file, as quantize reads it
    CHECK(d.samples == ids.size(0));
    CHECK(d.seq_len == ids.size(1));

    std::map<std::string, const CalibSite*> by_module;
    for (const auto& s : d.sites) by_module[s.module] = &s;
    std::set<std::string> unobserved(d.unobserved.begin(), d.unobserved.end());
    const ModelConfig cfg = load_config(model);
    const SiteMap map = map_sites(plugin_for(cfg), cfg, *Checkpoint::open(model));
    std::map<std::string, const Site*> site_of_module;
    for (const auto& s : map.sites) site_of_module[s.module] = &s;
    int64_t compared = 0;
    for (const auto& key : oracle->names()) {
      if (key.rfind("amax.", 0) != 0) continue;
      const std::string module = key.substr(5);
      const float want = tensor_view(*oracle, key).item<float>();
      INFO(fam << ": " << module << " oracle amax " << want);
      auto it = by_module.find(module);
      if (it == by_module.end()) {
        // Routers and lm_head may go unreported by the forward (listed as unobserved); nothing else may.
        auto site = site_of_module.find(module);
        REQUIRE(site != site_of_module.end());
        CHECK(unobserved.count(site->second->name) == 1);
        CHECK((site->second->role == Role::Router || site->second->role == Role::LmHead));
        WARN(fam << ": no statistics for " << module << " (the forward does not report it)");
        continue;
      }
      CHECK_FALSE(it->second->fallback);  // the oracle has keys only for experts with rows
      CHECK(std::abs(it->second->amax - want) <= kRelTol * std::abs(want));
      ++compared;
    }
    CHECK(compared > 0);
    // Every routed-expert / attention / MLP site has statistics; fallbacks are exactly
    // the experts the oracle has no amax for.
    for (const auto& s : d.sites)
      if (s.fallback) CHECK_FALSE(oracle->has("amax." + s.module));
    for (const auto& s : map.sites) {
      if (!unobserved.count(s.name)) continue;
      INFO(fam << ": unobserved " << s.name);
      CHECK((s.role == Role::Router || s.role == Role::LmHead));
    }
    for (const auto& l : d.layers) {
      INFO(fam << ": layer " << l.layer);
      const std::string key = "tokens." + std::to_string(l.layer);
      REQUIRE(oracle->has(key));
      const at::Tensor t = tensor_view(*oracle, key).to(at::kLong).contiguous();
      const std::vector<int64_t> want(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
      CHECK(l.tokens_per_expert == want);
      CHECK(l.router_load == want);
    }
    CHECK(d.layers.size() > 0);
  }
  for (const auto& s : skipped) WARN("skipped " << s);
  if (ran.empty()) SKIP("no family ran: " << (skipped.empty() ? std::string("none listed") : skipped[0]));
}
