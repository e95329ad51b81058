// GPTQ Hessians of non-expert linears (calib/hessian_observer.h, calib/hessian_file.h): on every
// family's tiny checkpoint, the Hessian the observer accumulates for an attention input equals
// 2 X^T X of that input captured another way (ForwardOptions::input_transform, which sees what
// each linear multiplies), q/k/v share one and o has its own, and the side file gives back
// H = 2/n X^T X with n; a version 1 file (experts only) says so.
#include <ATen/ATen.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>

#include "calib/calibrators/gptq.h"
#include "calib/calibrators/gptq_job.h"
#include "calib/forward.h"
#include "calib/hessian_file.h"
#include "calib/hessian_observer.h"
#include "io/checkpoint.h"
#include "io/safetensors_writer.h"
#include "model/config.h"
#include "recipe/recipe.h"
#include "test_util.h"
#include "tiny_families.h"

using namespace moeq;

TEST_CASE("gptq hessians: non-expert linears get 2 X^T X of their own input", "[tiny][gptq]") {
  const std::string root = test::tiny_dir();
  const test::TempDir td;
  const std::string tmp = td.path;
  for (const std::string& fam : test::tiny_families(/*with_forward=*/true)) {
    DYNAMIC_SECTION(fam) {
      const std::string model = root + "/" + fam + "/model";
      const ModelConfig cfg = load_config(model);
      const at::Tensor ids = at::arange(2 * 12, at::kLong).mul(7).remainder(cfg.vocab_size).view({2, 12});
      ForwardOptions o;
      o.dtype = at::kFloat;
      std::map<std::string, at::Tensor> xtx;  // site name -> 2 X^T X (double) from the hook
      std::map<std::string, int64_t> rows;
      o.input_transform = [&](const Site& s, const at::Tensor& x) {
        const at::Tensor x2 = x.reshape({-1, x.size(-1)}).to(at::kDouble);
        at::Tensor& a = xtx[s.name];
        a = a.defined() ? a + 2 * x2.t().mm(x2) : 2 * x2.t().mm(x2);
        rows[s.name] += x2.size(0);
        return x;
      };
      HessianObserver obs(nullptr);
      auto f = make_forward(Checkpoint::open(model), cfg, o);
      f->run(ids, &obs, [](int64_t, const at::Tensor&) {});
      // Every attention-role site the hook saw has the hook's 2 X^T X.
      int checked = 0;
      std::string q_name;
      for (const auto& [name, want] : xtx) {
        if (name.find(".attn.") == std::string::npos) continue;
        const auto [sum, n] = obs.linear_sums(name);
        INFO(name);
        CHECK(n == rows.at(name));
        CHECK(at::allclose(sum.to(at::kDouble), want, 1e-4, 1e-4 * want.abs().max().item<double>()));
        ++checked;
        if (name == "layers.0.attn.q") q_name = name;
      }
      REQUIRE(checked > 0);
      const std::string path = tmp + "/" + fam + ".hessians.safetensors";
      obs.write(path, "fp-test");
      auto hf = HessianFile::open(path, "fp-test");
      CHECK(hf->version() == kHessianFileVersion);
      if (!q_name.empty() && hf->has_linear("layers.0.attn.k")) {  // q, k, v share one input and one Hessian
        CHECK(at::equal(hf->linear_hessian("layers.0.attn.q"), hf->linear_hessian("layers.0.attn.k")));
        const at::Tensor h = hf->linear_hessian(q_name);
        const int64_t n = hf->linear_tokens(q_name);
        CHECK(n == rows.at(q_name));
        CHECK(at::allclose(h.to(at::kDouble), xtx.at(q_name) / n, 1e-4, 1e-4 * h.abs().max().item<double>()));
      }
      REQUIRE_ERROR_MENTIONS(hf->linear_hessian("layers.0.router"), path.c_str(), "layers.0.router");
    }
  }
}

TEST_CASE("gptq hessians: a version 1 file holds experts only and says so", "[gptq]") {
  const test::TempDir td;
  const std::string dir = td.path;
  const at::Tensor h = at::eye(4, at::kFloat).unsqueeze(0).contiguous();
  const at::Tensor n = at::tensor(std::vector<int64_t>{5}, at::kLong);
  {
    SafetensorsWriter w(dir, {{hessian_tensor_name(0, "gate_up", "hessian"), DType::F32, {1, 4, 4}},
                              {hessian_tensor_name(0, "gate_up", "tokens"), DType::I64, {1}}},
                        ~0ull, {{"format", "moeq-gptq-hessians"}, {"model_fingerprint", "fp"}});
    w.write(hessian_tensor_name(0, "gate_up", "hessian"), h.data_ptr(), h.nbytes());
    w.write(hessian_tensor_name(0, "gate_up", "tokens"), n.data_ptr(), n.nbytes());
    w.finish();
  }
  auto hf = HessianFile::open(dir + "/model.safetensors", "fp");
  CHECK(hf->version() == 1);
  CHECK(at::equal(hf->hessian(0, "gate_up"), h));
  CHECK(!hf->has_linear("layers.0.attn.q"));
  REQUIRE_ERROR_MENTIONS(hf->linear_hessian("layers.0.attn.q"), "version 1", "layers.0.attn.q", "--gptq-hessians");
  // A gptq rule on attention with this file: an error naming the site and the remedy.
  Site q;
  q.name = "layers.0.attn.q";
  q.role = Role::Attention;
  q.layer = 0;
  q.proj = "q";
  q.view.tensor = "q.weight";
  q.view.rows = 8;
  q.view.cols = 32;
  const std::vector<Site> qs{q};
  Plan p = make_plan(parse_recipe("recipe: t\nrules:\n  - sites: \"*\"\n    format: int4\n    params: {group_size: 32}\n    calibrator: gptq\n",
                                  "t.yaml"),
                     qs, false);
  REQUIRE_ERROR_MENTIONS(attach_hessians(p, hf), "layers.0.attn.q", "version 1", "--gptq-hessians");
  Plan a = make_plan(parse_recipe("recipe: t\nrules:\n  - sites: \"*\"\n    format: int4\n    params: {group_size: 32}\n    calibrator: awq\n",
                                  "t.yaml"),
                     qs, false);
  REQUIRE_ERROR_MENTIONS(attach_hessians(a, hf), "layers.0.attn.q", "calibrator awq", "version 1");
  // awq on a dense MLP: refused whatever the file (routed experts and attention only).
  Site d = q;
  d.name = "layers.0.mlp.down";
  d.role = Role::DenseMlp;
  d.proj = "down";
  const std::vector<Site> ds{d};
  Plan m = make_plan(parse_recipe("recipe: t\nrules:\n  - sites: \"*\"\n    format: int4\n    params: {group_size: 32}\n    calibrator: awq\n",
                                  "t.yaml"),
                     ds, false);
  REQUIRE_ERROR_MENTIONS(attach_hessians(m, hf), "layers.0.mlp.down", "awq", "routed experts and attention");
}

TEST_CASE("gptq hessians: an attention site is quantized with its input's Hessian; one without falls back, listed", "[gptq]") {
  auto site = [](const std::string& name, const std::string& proj) {
    Site s;
    s.name = name;
    s.role = Role::Attention;
    s.layer = 0;
    s.proj = proj;
    s.view.tensor = name + ".weight";
    s.view.rows = 8;
    s.view.cols = 64;
    return s;
  };
  const std::vector<Site> sites{site("layers.0.attn.q", "q"), site("layers.0.attn.k", "k"), site("layers.0.attn.o", "o")};
  // Correlated inputs with unequal channel scales, so that GPTQ differs from plain rounding.
  at::manual_seed(3);
  const at::Tensor x = at::randn({256, 64}).mm(at::randn({64, 64}) * 0.3 + at::eye(64)) * at::linspace(0.2, 3.0, 64);
  HessianObserver obs(nullptr);
  obs.linear_input({&sites[0], &sites[1]}, x);  // o's input is never reported
  const test::TempDir td;
  const std::string path = td.path + "/c.hessians.safetensors";
  obs.write(path, "fp");
  auto hf = HessianFile::open(path, "fp");
  Plan p = make_plan(parse_recipe("recipe: t\nrules:\n  - sites: \"*\"\n    format: int4\n    params: {group_size: 32}\n"
                                  "    calibrator: {method: gptq, min_tokens: 64}\n",
                                  "t.yaml"),
                     sites, false);
  attach_hessians(p, hf);
  const at::Tensor w = at::randn({8, 64}) * 0.05;
  const QuantFormat& fmt = format_by_name("int4");
  FormatParams fp;
  fp.block_size = 32;
  const at::Tensor eff = fmt.quantize(w, fp).parts.at("weight_scale").to(at::kFloat).repeat_interleave(32, -1).unsqueeze(0);
  const at::Tensor h = (2.0 / 256) * x.t().mm(x);
  const GptqResult want = gptq_quantize(w.unsqueeze(0), h.unsqueeze(0), eff, GptqGrid::Int, {}, -8, 7);
  const auto got_q = gptq_quantize_job({SiteBatch{{&p.sites[0]}, "q"}}, {w}, std::nullopt);
  CHECK(at::allclose(fmt.dequantize(got_q.at(0), at::kFloat), want.q.squeeze(0), 0, 1e-7));
  CHECK_FALSE(at::equal(fmt.dequantize(got_q.at(0), at::kFloat), fmt.dequantize(fmt.quantize(w, fp), at::kFloat)));
  CHECK(hf->fallbacks().empty());
  const auto got_o = gptq_quantize_job({SiteBatch{{&p.sites[2]}, "o"}}, {w}, std::nullopt);
  CHECK(at::equal(fmt.dequantize(got_o.at(0), at::kFloat), fmt.dequantize(fmt.quantize(w, fp), at::kFloat)));
  REQUIRE(hf->fallbacks().size() == 1);
  CHECK_THAT(hf->fallbacks()[0], Catch::Matchers::ContainsSubstring("layers.0.attn.o: no Hessian"));
}
