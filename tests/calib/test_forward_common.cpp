// The native forward against transformers (tests/python/forward_oracle.py), family-independent
// parts: the per-family check, chunking, all-experts statistics, blocks, the registry.
//
// Tolerances (float32 oracle, CPU or GPU):
//   float32 logits: max |ours - transformers| <= 1e-4 * max |logit|
//   router top-k ids (sorted per row): equal; rows per expert: equal
//   amax of every linear input: |ours - oracle| <= 1e-4 * oracle (same float32 math, different
//     summation order), and the same set of modules
//   bfloat16 logits: max |ours_bf16 - logits_f32| <= 2 * max |transformers_bf16 - logits_f32| + 1e-3 * max |logit|
//     (our bf16 error is of the size of transformers' own; we accumulate the expert sum in float32),
//     over the positions no routing flip reached: a token whose bf16 top-k differs from the float32
//     oracle's (near-ties of the tiny random routers) and every later position of its sample are
//     left out; at most 5% of top-k decisions may flip and at least half of the positions must remain
// ATen before Catch2: c10's logging header defines its own CHECK, Catch2's must win.
#include "calib/forward/blocks.h"
#include "tests/calib/forward_test_util.h"
#include "tests/test_util.h"

#include <catch2/catch_test_macros.hpp>

#include <cmath>
#include <map>

namespace moeq::test {

namespace {
// One forward over ids with a RecordingObserver: logits [N, S, V] (float32, CPU) and what the
// observer saw. The forward is kept: it owns the sites the observer points to.
struct RecordedRun {
  std::unique_ptr<MoeForward> forward;
  std::unique_ptr<RecordingObserver> obs;
  ForwardResult result;
};

RecordedRun run_recorded(const std::string& model_dir, const at::Tensor& ids, const ForwardOptions& o) {
  RecordedRun r;
  r.forward = make_forward(Checkpoint::open(model_dir), load_config(model_dir), o);
  r.obs = std::make_unique<RecordingObserver>(r.forward->sites());
  std::vector<at::Tensor> parts;
  r.result.stats = r.forward->run(ids, r.obs.get(), [&](int64_t, const at::Tensor& l) { parts.push_back(l.to(at::kCPU)); });
  r.result.logits = at::cat(parts);
  return r;
}
}  // namespace

void check_family_against_oracle(const std::string& family) {
  const std::string dir = forward_dir() + "/" + family;
  auto oracle = load_tensors(dir + "/forward_oracle.safetensors");
  const at::Tensor ids = oracle.at("ids");
  const at::Tensor ref = oracle.at("logits");
  const double scale = max_abs(ref);
  const at::Device dev = test_device();

  ForwardOptions o;
  o.device = dev;
  o.dtype = at::kFloat;
  o.chunk_samples = 2;  // 3 samples: two chunks of different sizes
  RecordedRun run = run_recorded(dir + "/model", ids, o);
  const RecordingObserver& obs = *run.obs;
  const ForwardStats& st = run.result.stats;
  const at::Tensor& logits = run.result.logits;
  REQUIRE(logits.sizes() == ref.sizes());
  const double d32 = max_diff(logits, ref);
  INFO(family << ": float32 max diff " << d32 << ", max |logit| " << scale << ", experts: " << st.expert_gemm
              << ", peak " << st.peak_device_bytes << " bytes");
  CHECK(d32 <= 1e-4 * scale);
  CHECK(st.tokens == ids.numel());
  CHECK(st.peak_device_bytes > 0);

  // Router decisions and rows per expert.
  int64_t routed_layers = 0;
  for (const auto& [name, t] : oracle) {
    if (name.rfind("router.", 0) != 0) continue;
    const int64_t layer = std::stoll(name.substr(7, name.find('.', 7) - 7));
    INFO("layer " << layer);
    REQUIRE(obs.topk.count(layer));
    CHECK(at::equal(obs.topk_ids(layer), t));
    CHECK(at::equal(obs.tokens.at(layer).to(at::kCPU), oracle.at("tokens." + std::to_string(layer))));
    ++routed_layers;
  }
  CHECK(routed_layers == static_cast<int64_t>(obs.topk.size()));
  CHECK(routed_layers > 0);

  // amax of every linear input, both ways.
  int64_t compared = 0;
  double worst = 0;
  for (const auto& [name, t] : oracle) {
    if (name.rfind("amax.", 0) != 0) continue;
    const std::string module = name.substr(5);
    INFO("module " << module);
    REQUIRE(obs.amax.count(module));
    const double want = t.item<double>(), got = obs.amax.at(module);
    worst = std::max(worst, std::abs(got - want) / want);
    CHECK(std::abs(got - want) <= 1e-4 * want);
    ++compared;
  }
  for (const auto& [module, v] : obs.amax) {
    INFO("observer saw a module the oracle does not know: " << module);
    CHECK(oracle.count("amax." + module));
  }
  INFO("amax compared " << compared << ", worst relative diff " << worst);
  CHECK(compared == static_cast<int64_t>(obs.amax.size()));
  WARN(family << " on " << dev << ": float32 logits max diff " << d32 << " (max |logit| " << scale << "), " << compared
              << " amax keys, worst rel diff " << worst << ", experts: " << st.expert_gemm);
}

namespace {
// Positions [N, S] whose logits no routing flip can have reached: a token whose top-k in
// some layer differs from the float32 oracle's (a near-tie that bfloat16 rounding decides
// otherwise: tiny random routers have top-2/3 probability margins of ~1e-4) changes its own
// hidden state and, through attention, every later position of its sample.
at::Tensor positions_before_first_flip(const RecordingObserver& obs, const std::map<std::string, at::Tensor>& oracle,
                                       int64_t N, int64_t S, int64_t* flips) {
  at::Tensor flipped = at::zeros({N * S}, at::kBool);
  for (const auto& [layer, parts] : obs.topk) {
    const at::Tensor ours = obs.topk_ids(layer), want = oracle.at("router." + std::to_string(layer) + ".topk_ids");
    const at::Tensor differs = (ours != want).any(-1);
    *flips += differs.sum().item<int64_t>();
    flipped |= differs;
  }
  // keep[n, s] = no flip at positions <= s of sample n
  return (flipped.view({N, S}).to(at::kInt).cumsum(1) == 0);
}

void check_bf16(const std::string& family) {
  const std::string dir = forward_dir() + "/" + family;
  auto oracle = load_tensors(dir + "/forward_oracle.safetensors");
  const at::Tensor ids = oracle.at("ids"), ref = oracle.at("logits"), hf = oracle.at("logits_bf16");
  ForwardOptions o;
  o.device = test_device();
  o.dtype = at::kBFloat16;
  RecordedRun run = run_recorded(dir + "/model", ids, o);
  const RecordingObserver& obs = *run.obs;
  const ForwardResult& r = run.result;
  const int64_t N = ids.size(0), S = ids.size(1);
  int64_t flips = 0;
  const at::Tensor keep = positions_before_first_flip(obs, oracle, N, S, &flips);
  const int64_t kept = keep.sum().item<int64_t>(), decisions = N * S * static_cast<int64_t>(obs.topk.size());
  const at::Tensor m = keep.unsqueeze(-1).expand_as(ref);
  auto masked_diff = [&](const at::Tensor& a) { return (a - ref).abs().masked_select(m).max().item<double>(); };
  const double ours = masked_diff(r.logits), theirs = masked_diff(hf), scale = max_abs(ref);
  WARN(family << " bf16 on " << o.device << ": ours vs f32 " << ours << ", transformers bf16 vs f32 " << theirs
              << " over " << kept << " of " << N * S << " positions (" << flips << " of " << decisions
              << " top-k decisions differ from float32's), all positions: ours " << max_diff(r.logits, ref)
              << ", experts: " << r.stats.expert_gemm << ", peak " << r.stats.peak_device_bytes << " bytes");
  // Flips are rare near-ties, and most positions stay comparable.
  CHECK(flips * 20 <= decisions);
  CHECK(kept * 2 >= N * S);
  CHECK(ours <= 2 * theirs + 1e-3 * scale);
  if (o.device.is_cuda()) CHECK(r.stats.expert_gemm == "grouped (at::_grouped_mm)");
}

void check_fused_layout(const std::string& family) {
  const std::string dir = forward_dir() + "/" + family;
  if (!std::filesystem::exists(dir + "/fused/model.safetensors")) {
    SUCCEED(family << ": model/ holds the fused 3D layout already (checked above)");
    return;
  }
  auto oracle = load_tensors(dir + "/forward_oracle.safetensors");
  ForwardOptions o;
  o.device = test_device();
  o.dtype = at::kFloat;
  ForwardResult a = run_forward(dir + "/model", oracle.at("ids"), o);
  ForwardResult b = run_forward(dir + "/fused", oracle.at("ids"), o);
  CHECK(max_diff(a.logits, b.logits) <= 1e-6 * max_abs(a.logits));
}
}  // namespace

void check_family(const std::string& family) {
  SECTION("float32 logits, router top-k, rows per expert and linear-input amax match transformers") {
    check_family_against_oracle(family);
  }
  SECTION("bfloat16 logits within twice transformers' own bfloat16 error") { check_bf16(family); }
  SECTION("the fused 3D on-disk layout gives the same logits as the per-expert one") { check_fused_layout(family); }
}

TEST_CASE("forward: chunk_samples=1 gives the logits of one chunk of all samples", "[forward]") {
  const std::string dir = forward_dir() + "/qwen3_moe";
  auto oracle = load_tensors(dir + "/forward_oracle.safetensors");
  ForwardOptions o;
  o.device = test_device();
  o.dtype = at::kFloat;
  o.chunk_samples = 1;
  ForwardResult one = run_forward(dir + "/model", oracle.at("ids"), o);
  o.chunk_samples = oracle.at("ids").size(0);
  ForwardResult all = run_forward(dir + "/model", oracle.at("ids"), o);
  o.hidden_on_host = true;
  ForwardResult host = run_forward(dir + "/model", oracle.at("ids"), o);
  const double scale = max_abs(all.logits);
  CHECK(max_diff(one.logits, all.logits) <= 1e-6 * scale);
  CHECK(max_diff(host.logits, all.logits) == 0);
}

TEST_CASE("forward: weight_transform sees every linear site once and replaces its weight", "[forward]") {
  const std::string dir = forward_dir() + "/qwen3_moe";
  auto oracle = load_tensors(dir + "/forward_oracle.safetensors");
  ForwardOptions o;
  o.device = test_device();
  o.dtype = at::kFloat;
  std::map<std::string, int> calls;
  // Doubling lm_head doubles the logits exactly (a power of two); every other site is unchanged.
  o.weight_transform = [&](const Site& s, const at::Tensor& w) {
    ++calls[s.name];
    CHECK(w.device() == o.device);
    CHECK(w.sizes() == at::IntArrayRef({s.view.rows, s.view.cols}));
    return s.role == Role::LmHead ? w * 2 : w;
  };
  std::unique_ptr<MoeForward> keep;
  ForwardResult r = run_forward(dir + "/model", oracle.at("ids"), o, nullptr, &keep);
  CHECK(max_diff(r.logits, oracle.at("logits") * 2) <= 2e-4 * max_abs(oracle.at("logits")));
  CHECK(calls.size() == keep->sites().sites.size());
  for (const auto& [name, n] : calls) {
    INFO(name);
    CHECK(n == 1);
  }
}

TEST_CASE("forward: all_experts_see_all_tokens keeps the top-k output, every expert sees every token", "[forward]") {
  const std::string dir = forward_dir() + "/qwen3_moe";
  auto oracle = load_tensors(dir + "/forward_oracle.safetensors");
  const at::Tensor ids = oracle.at("ids");
  ForwardOptions o;
  o.device = test_device();
  o.dtype = at::kFloat;
  o.all_experts_see_all_tokens = true;
  RecordedRun run = run_recorded(dir + "/model", ids, o);
  const RecordingObserver& obs = *run.obs;
  const at::Tensor ref = oracle.at("logits");
  CHECK(max_diff(run.result.logits, ref) <= 1e-4 * max_abs(ref));
  for (const auto& [layer, counts] : obs.tokens) CHECK((counts.to(at::kCPU) == ids.numel()).all().item<bool>());
  // Each expert's gate input now covers all tokens: its amax is the layer input's amax, at
  // least the top-k amax of the oracle.
  int64_t checked = 0;
  for (const auto& [name, t] : oracle) {
    if (name.rfind("amax.", 0) != 0 || name.find(".experts.") == std::string::npos || name.find("gate_proj") == std::string::npos) continue;
    CHECK(obs.amax.at(name.substr(5)) >= t.item<float>() * (1 - 1e-5));
    ++checked;
  }
  CHECK(checked > 0);
}

TEST_CASE("forward blocks: grouped expert GEMM equals per-row products", "[forward]") {
  const at::Device dev = test_device();
  const at::ScalarType dt = dev.is_cuda() ? at::kBFloat16 : at::kFloat;
  at::manual_seed(7);
  const int64_t E = 4, K = 64, N = 32;
  at::Tensor counts = at::tensor({3, 0, 5, 8}, at::kLong);
  const int64_t R = counts.sum().item<int64_t>();
  at::Tensor x = at::randn({R, K}).to(dev, dt), w = at::randn({E, N, K}).to(dev, dt);
  fwd::ExpertGemm gemm;
  at::Tensor y = gemm.linear(x, w, counts.to(dev)).to(at::kFloat).cpu();
  at::Tensor ref = at::empty({R, N});
  int64_t row = 0;
  for (int64_t e = 0; e < E; ++e)
    for (int64_t i = 0; i < counts[e].item<int64_t>(); ++i, ++row)
      ref[row] = at::mv(w[e].to(at::kFloat).cpu(), x[row].to(at::kFloat).cpu());
  const double tol = dev.is_cuda() ? 2e-2 * max_abs(ref) : 1e-5 * max_abs(ref);
  CHECK(max_diff(y, ref) <= tol);
  if (dev.is_cuda()) CHECK(gemm.description() == "grouped (at::_grouped_mm)");
  else CHECK(gemm.description() == "per-expert loop (CPU)");
}

TEST_CASE("forward blocks: sliding-window causal attention equals a hand-masked softmax", "[forward]") {
  const at::Device dev = test_device();
  at::manual_seed(3);
  const int64_t B = 2, Hq = 4, Hkv = 2, S = 9, D = 8, window = 3;
  at::Tensor q = at::randn({B, Hq, S, D}), k = at::randn({B, Hkv, S, D}), v = at::randn({B, Hkv, S, D});
  at::Tensor got = fwd::attention(q.to(dev), k.to(dev), v.to(dev), 0.5, window).cpu();
  at::Tensor kk = k.repeat_interleave(Hq / Hkv, 1), vv = v.repeat_interleave(Hq / Hkv, 1);
  at::Tensor scores = at::matmul(q, kk.transpose(2, 3)) * 0.5;
  for (int64_t i = 0; i < S; ++i)
    for (int64_t j = 0; j < S; ++j)
      if (j > i || i - j >= window) scores.select(2, i).select(2, j).fill_(-INFINITY);
  at::Tensor want = at::matmul(at::softmax(scores, -1), vv);
  CHECK(max_diff(got, want) <= 1e-5);
  // window >= seq is plain causal attention
  at::Tensor full = fwd::attention(q.to(dev), k.to(dev), v.to(dev), 0.5, S).cpu();
  CHECK(max_diff(full, fwd::attention(q, k, v, 0.5, 0)) <= 1e-5);
}

TEST_CASE("forward blocks: proportional RoPE rotates the first frequencies, passes the rest through", "[forward]") {
  // head_dim 16, partial 0.25: 2 rotated frequencies theta^(-0/16), theta^(-2/16), then 6 zeros.
  at::Tensor f = fwd::proportional_inv_freq(1e6, 16, 0.25);
  REQUIRE(f.size(0) == 8);
  CHECK(f[0].item<float>() == 1.0f);
  CHECK(std::abs(f[1].item<double>() / std::pow(1e6, -2.0 / 16) - 1) < 1e-6);
  CHECK((f.narrow(0, 2, 6) == 0).all().item<bool>());
  fwd::Rope r = fwd::make_rope(f, 5, at::kCPU, at::kFloat);
  at::Tensor x = at::randn({1, 5, 2, 16});
  at::Tensor y = fwd::apply_rope(x, r);
  // dims of zero frequency (2..7 and 10..15) pass through unchanged
  CHECK(at::equal(y.narrow(-1, 2, 6), x.narrow(-1, 2, 6)));
  CHECK(at::equal(y.narrow(-1, 10, 6), x.narrow(-1, 10, 6)));
  CHECK(at::equal(y.select(1, 0), x.select(1, 0)));  // position 0 is not rotated
}

TEST_CASE("forward: families without a native forward are named in the error", "[forward]") {
  ModelConfig c;
  c.model_type = c.text_model_type = "no_such_model";
  c.path = "x/config.json";
  REQUIRE_ERROR_MENTIONS(make_forward(nullptr, c, ForwardOptions{}), "no_such_model", "Qwen3-MoE");
}

}  // namespace moeq::test
