#pragma once
// Shared checks of the native forward against tests/python/forward_oracle.py (transformers).
// Tests run on the CPU, or on the GPU with MOEQ_TEST_DEVICE=cuda.
// ATen before Catch2: c10's logging header defines its own CHECK, Catch2's must win.
#include <ATen/ATen.h>
#include <catch2/catch_test_macros.hpp>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "calib/forward.h"
#include "tensor/aten_view.h"
#include "io/checkpoint.h"
#include "model/config.h"

namespace moeq::test {

// TINY_DIR with forward_oracle.safetensors per family (ctest fixture `forward_oracle`), or skip.
inline std::string forward_dir() {
  const char* d = std::getenv("MOEQ_FORWARD_DIR");
  if (!d) SKIP("MOEQ_FORWARD_DIR not set (run through ctest: fixture forward_oracle)");
  return d;
}

inline at::Device test_device() {
  const char* d = std::getenv("MOEQ_TEST_DEVICE");
  if (!d || std::string(d) == "cpu") return at::kCPU;
  if (std::string(d) == "cuda") {
    if (!at::hasCUDA()) FAIL("MOEQ_TEST_DEVICE=cuda but this build/machine has no CUDA");
    return at::Device(at::kCUDA, 0);
  }
  FAIL("MOEQ_TEST_DEVICE must be cpu or cuda, got " << d);
  return at::kCPU;
}

// Every tensor of a safetensors file, copied out of the mapping.
inline std::map<std::string, at::Tensor> load_tensors(const std::string& path) {
  auto ck = Checkpoint::open_file(path);
  std::map<std::string, at::Tensor> out;
  for (const auto& n : ck->names()) out[n] = tensor_view(*ck, n).clone();
  return out;
}

// Records what the forward shows an observer: the amax of each site's input (by Site.module,
// expert inputs split by expert), router top-k ids per layer, rows per expert.
class RecordingObserver : public ActivationObserver {
 public:
  explicit RecordingObserver(const SiteMap& sites) {
    for (const Site& s : sites.sites)
      if (s.role == Role::Expert) expert_sites_[{s.layer, s.expert}][s.proj] = &s;
  }
  void linear_input(const std::vector<const Site*>& sites, const at::Tensor& x) override {
    REQUIRE(x.dim() == 2);
    for (const Site* s : sites) {
      REQUIRE(x.size(1) == s->view.cols);
      put(s->module, x);
    }
  }
  void expert_input(int64_t layer, const std::string& proj, const at::Tensor& x, const at::Tensor& expert_of_row,
                    const at::Tensor& counts) override {
    at::Tensor c = counts.to(at::kCPU), eor = expert_of_row.to(at::kCPU);
    REQUIRE(c.sum().item<int64_t>() == x.size(0));
    REQUIRE(eor.size(0) == x.size(0));
    int64_t start = 0;
    for (int64_t e = 0; e < c.size(0); ++e) {
      const int64_t n = c[e].item<int64_t>();
      if (n == 0) continue;
      REQUIRE((eor.narrow(0, start, n) == e).all().item<bool>());  // rows grouped by expert, ascending
      at::Tensor rows = x.narrow(0, start, n);
      const auto& projs = expert_sites_.at({layer, e});
      if (proj == "gate_up") {
        put(projs.at("gate")->module, rows);
        put(projs.at("up")->module, rows);
      } else {
        REQUIRE(proj == "down");
        put(projs.at("down")->module, rows);
      }
      start += n;
    }
    if (proj == "gate_up") {
      at::Tensor& t = tokens[layer];
      t = t.defined() ? t + c : c.clone();
    }
  }
  void router(int64_t layer, const at::Tensor& ids, const at::Tensor& weights) override {
    REQUIRE(ids.sizes() == weights.sizes());
    topk[layer].push_back(std::get<0>(ids.to(at::kCPU).sort(-1)));
  }
  at::Tensor topk_ids(int64_t layer) const { return at::cat(topk.at(layer)); }

  std::map<std::string, float> amax;
  std::map<int64_t, at::Tensor> tokens;
  std::map<int64_t, std::vector<at::Tensor>> topk;

 private:
  void put(const std::string& module, const at::Tensor& x) {
    const float v = x.abs().max().to(at::kFloat).item<float>();
    auto it = amax.find(module);
    if (it == amax.end()) amax[module] = v;
    else it->second = std::max(it->second, v);
  }
  std::map<std::pair<int64_t, int64_t>, std::map<std::string, const Site*>> expert_sites_;
};

struct ForwardResult {
  at::Tensor logits;  // [N, S, V] float32 on the CPU
  ForwardStats stats;
};

inline ForwardResult run_forward(const std::string& model_dir, const at::Tensor& ids, ForwardOptions opt,
                                 ActivationObserver* obs = nullptr, std::unique_ptr<MoeForward>* keep = nullptr) {
  auto ck = Checkpoint::open(model_dir);
  ModelConfig cfg = load_config(model_dir);
  std::unique_ptr<MoeForward> f = make_forward(ck, cfg, opt);
  ForwardResult r;
  std::vector<at::Tensor> parts;
  r.stats = f->run(ids, obs, [&](int64_t first, const at::Tensor& logits) {
    REQUIRE(first == static_cast<int64_t>(parts.size()) * opt.chunk_samples);
    REQUIRE(logits.scalar_type() == at::kFloat);
    parts.push_back(logits.to(at::kCPU));
  });
  r.logits = at::cat(parts);
  if (keep) *keep = std::move(f);
  return r;
}

inline double max_abs(const at::Tensor& t) { return t.abs().max().item<double>(); }
inline double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

// Checks one tiny family against its oracle; tolerances in test_forward_common.cpp.
void check_family_against_oracle(const std::string& family);
// Sections: float32 vs oracle, bfloat16 vs transformers' bfloat16 error, fused layout.
void check_family(const std::string& family);

}  // namespace moeq::test
