// calibrator gptq's `observer: mse` (calib/calibrators/int_mse_scales.h): its p = 1 candidate is
// the INT format's own max-path scale, and each group's pick equals an independent scalar
// search in double precision (the hand-written oracle below), and the recipe key is checked.
#include <ATen/ATen.h>
#include <c10/util/BFloat16.h>

#include <catch2/catch_approx.hpp>
#include <catch2/catch_test_macros.hpp>
#include <cmath>
#include <vector>

#include "calib/calibrators/int_mse_scales.h"
#include "formats/format.h"
#include "recipe/recipe.h"
#include "test_util.h"

using namespace moeq;

namespace {

float bf16(double v) { return static_cast<float>(c10::BFloat16(static_cast<float>(v))); }

// One group: the candidate scales bf16(bf16(amax * p) / 7.5) for p = 1 - i/100, i < 20, and
// their errors sum |clamp(rint(bf16(w / s)), -8, 7) s - w|^2.4 in double; the first least.
// Returns the picked scale and the gap between the best and second-best errors (relative).
std::pair<float, double> scalar_pick(const std::vector<float>& g) {
  double amax = 0;
  for (float v : g) amax = std::max(amax, static_cast<double>(std::fabs(v)));
  const float a = bf16(amax);
  std::vector<std::pair<double, float>> errs;
  for (int i = 0; i < 20; ++i) {
    const double p = 1.0 - i / 100.0;
    // float arithmetic rounded to bf16, as ATen's bf16 ops (float opmath) compute it
    const float ap = i == 0 ? a : bf16(static_cast<double>(a * static_cast<float>(p)));
    const float s = bf16(static_cast<double>(ap / 7.5f));
    double e = 0;
    for (float v : g) {
      double q = std::nearbyint(static_cast<double>(bf16(static_cast<double>(v / s))));
      q = std::min(7.0, std::max(-8.0, q));
      e += std::pow(std::fabs(q * s - v), 2.4);
    }
    errs.push_back({e, s});
  }
  size_t best = 0;
  for (size_t i = 1; i < errs.size(); ++i)
    if (errs[i].first < errs[best].first) best = i;
  double second = INFINITY;
  for (size_t i = 0; i < errs.size(); ++i)
    if (i != best && errs[i].second != errs[best].second) second = std::min(second, errs[i].first);
  return {errs[best].second, (second - errs[best].first) / std::max(errs[best].first, 1e-30)};
}

}  // namespace

TEST_CASE("int mse scales: p = 1 is the int4 format's max-path scale, byte for byte") {
  at::manual_seed(3);
  const at::Tensor w = (at::randn({2, 8, 64}) * 0.02).to(at::kBFloat16);
  FormatParams p;
  p.block_size = 32;
  p.symmetric = true;
  const at::Tensor max_scales = format_by_name("int4").quantize(w, p).parts.at("weight_scale");
  IntMseOptions one;
  one.maxshrink = 0.01;  // one candidate: p = 1
  const at::Tensor s = int_mse_group_scales(w, 32, -8, 7, one);
  REQUIRE(s.sizes() == max_scales.sizes());
  CHECK(at::equal(s, max_scales.to(s.scalar_type())));
}

TEST_CASE("int mse scales: every group's pick equals a scalar search in double (llm-compressor's grid and norm)") {
  at::manual_seed(5);
  // Heavy-tailed groups (Student-t-like: normal / sqrt(chi2)) so that shrinking often wins.
  const at::Tensor n = at::randn({3, 16, 128});
  const at::Tensor w = (n / at::randn({3, 16, 128}).abs().clamp_min(0.2) * 0.01).to(at::kBFloat16);
  IntMseOptions o;
  o.patience = 1000;  // the scalar oracle searches every candidate
  const at::Tensor s = int_mse_group_scales(w, 32, -8, 7, o).to(at::kFloat).contiguous();
  const at::Tensor wf = w.to(at::kFloat).contiguous();
  int64_t groups = 0, shrunk = 0, checked = 0;
  for (int64_t e = 0; e < 3; ++e)
    for (int64_t r = 0; r < 16; ++r)
      for (int64_t gi = 0; gi < 4; ++gi) {
        std::vector<float> g(32);
        for (int k = 0; k < 32; ++k) g[k] = wf[e][r][gi * 32 + k].item<float>();
        const auto [want, gap] = scalar_pick(g);
        const float got = s[e][r][gi].item<float>();
        ++groups;
        double amax = 0;
        for (float v : g) amax = std::max(amax, static_cast<double>(std::fabs(v)));
        shrunk += got < bf16(bf16(amax) / 7.5);
        if (gap < 1e-5) continue;  // a near tie: float32 and double may order it differently
        ++checked;
        INFO("expert " << e << " row " << r << " group " << gi);
        CHECK(got == want);
      }
  std::printf("int mse scales: %lld groups, %lld checked against the scalar search, %lld shrunk below max\n",
              static_cast<long long>(groups), static_cast<long long>(checked), static_cast<long long>(shrunk));
  CHECK(checked >= groups * 9 / 10);
  CHECK(shrunk > groups / 4);  // the search does something on heavy tails
}

TEST_CASE("int mse scales: recipe key observer") {
  const Recipe r = parse_recipe(
      "recipe: t\nrules:\n  - roles: [experts]\n    format: int4\n    params: {group_size: 32}\n"
      "    calibrator: {method: gptq, act_order: true, observer: mse}\n",
      "t.yaml");
  CHECK(r.rules[0].calibrator.gptq_observer_mse);
  CHECK(r.rules[0].calibrator.describe() == "gptq (block 128, dampening 0.01, act_order true, min_tokens 64, observer mse)");
  REQUIRE_ERROR_MENTIONS(parse_recipe("recipe: t\nrules:\n  - roles: [experts]\n    format: int4\n    calibrator: {method: mse, observer: mse}\n",
                                      "t.yaml"),
                         "observer", "gptq");
  REQUIRE_ERROR_MENTIONS(parse_recipe("recipe: t\nrules:\n  - roles: [experts]\n    format: nvfp4\n    calibrator: {method: gptq, observer: mse}\n",
                                      "t.yaml"),
                         "observer mse", "nvfp4");
  REQUIRE_ERROR_MENTIONS(parse_recipe("recipe: t\nrules:\n  - roles: [experts]\n    format: int4\n    calibrator: {method: gptq, observer: minmax}\n",
                                      "t.yaml"),
                         "minmax", "known: max, mse");
}
