// AWQ's folds (calib/calibrators/awq_fold.h) on every family's tiny checkpoint: with random
// scales on every MoE layer's expert input (and on down_proj's), and on every layer's attention
// input and o_proj's input where the family allows the fold, the folded model (norms w / s or
// (1 + w) / s - 1, readers' columns x s, experts folded, v_proj's rows and bias / s_o), unquantized
// and in float32, computes the source's logits within float rounding. A fold that missed a reader
// of a norm (a shared expert, a gate, a delta-net projection) or v's rows would move the logits
// by far more.
#include <ATen/ATen.h>

#include <catch2/catch_approx.hpp>

#include <set>
#include <string>

#include "calib/calibrators/awq_fold.h"
#include "calib/calibrators/awq_job.h"
#include "calib/calibrators/awq_attn.h"
#include "calib/calibrators/awq_norm.h"
#include "calib/forward.h"
#include "calib/model_forward.h"
#include "model/model.h"
#include "tensor/aten_view.h"
#include "test_util.h"
#include "tiny_families.h"

using namespace moeq;

namespace {

at::Tensor logits_of(const Model& m, const at::Tensor& ids, const ForwardOptions& o) {
  auto f = make_forward(m, o);
  std::vector<at::Tensor> parts;
  f->run(ids, nullptr, [&](int64_t, const at::Tensor& l) { parts.push_back(l.clone()); });
  return at::cat(parts);
}

// Random scales in [0.25, 4] on every MoE layer: gate_up [H] and down [E, I] (not for gpt-oss,
// whose clamped SwiGLU does not let down's scales fold: attach_awq_scales refuses them).
AwqScales random_scales(const Model& m) {
  const bool down_folds = m.config.text_model_type != "gpt_oss";
  AwqScales a;
  at::manual_seed(16);
  std::map<int64_t, std::pair<int64_t, int64_t>> shape;  // layer -> (E, I)
  int64_t H = 0;
  for (const Site& s : m.sites.sites)
    if (s.role == Role::Expert && s.proj == "down" && s.layer >= 0) {
      auto& e = shape[s.layer];
      e.first = std::max(e.first, s.expert + 1);
      e.second = s.view.cols;
      H = s.view.rows;
    }
  for (const auto& [layer, ei] : shape) {
    AwqScales::Layer& l = a.layers[layer];
    l.gate_up = at::exp(at::empty({H}).uniform_(-1.386, 1.386));
    if (down_folds) l.scales = at::exp(at::empty({ei.first, ei.second}).uniform_(-1.386, 1.386));
    l.norm = awq_norm_fold(m, layer);
  }
  // Attention: every layer with attention sites, where the family declares the folds (the
  // refusals are checked below). o's scales are drawn per kv head's channel, repeated over its heads.
  std::set<int64_t> layers;
  for (const Site& s : m.sites.sites)
    if (s.role == Role::Attention && s.layer >= 0) layers.insert(s.layer);
  for (int64_t layer : layers) {
    AwqScales::Layer& l = a.layers[layer];
    try {
      l.attn_norm = awq_attn_norm_fold(m, layer);
      l.attn_in = at::exp(at::empty({H}).uniform_(-1.386, 1.386));
    } catch (const Error&) {
    }
    try {
      l.vo = awq_vo_fold(m, layer);
      const at::Tensor per_kv = at::exp(at::empty({l.vo.kv_heads, 1, l.vo.head_dim}).uniform_(-1.386, 1.386));
      l.attn_o = per_kv.expand({l.vo.kv_heads, l.vo.group, l.vo.head_dim}).reshape({-1}).contiguous();
    } catch (const Error&) {
    }
  }
  return a;
}

// The folded aux tensors in float32 (awq_folded_tensors rounds them to the source dtype): the
// norms and v_proj's bias.
std::map<std::string, at::Tensor> folded_aux(const Model& m, const AwqScales& a) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [layer, l] : a.layers) {
    if (l.gate_up.defined()) out[l.norm.norm_tensor] = awq_fold_norm(tensor_view(*m.checkpoint, l.norm.norm_tensor), l.gate_up, l.norm.one_plus);
    if (l.attn_in.defined())
      out[l.attn_norm.norm_tensor] = awq_fold_norm(tensor_view(*m.checkpoint, l.attn_norm.norm_tensor), l.attn_in, l.attn_norm.one_plus);
    if (l.attn_o.defined() && !l.vo.v_bias.empty())
      out[l.vo.v_bias] = tensor_view(*m.checkpoint, l.vo.v_bias).to(at::kFloat) / awq_v_row_scales(l.vo, l.attn_o);
  }
  return out;
}

LayerKind& uniform_layers_of(DecoderSpec& s) { return s.kinds[DecoderSpec::kUniformLayers]; }

}  // namespace

TEST_CASE("awq fold: the folded model computes the source's function on every family", "[awq][tiny]") {
  const std::string root = test::tiny_dir();
  for (const std::string& fam : test::tiny_families(/*with_forward=*/true)) {
    DYNAMIC_SECTION(fam) {
      const Model m = open_model(root + "/" + fam + "/model");
      const at::Tensor ids = at::arange(2 * 12, at::kLong).remainder(m.config.vocab_size).view({2, 12});
      ForwardOptions o;
      o.dtype = at::kFloat;
      const at::Tensor ref = logits_of(m, ids, o);
      const AwqScales a = random_scales(m);
      REQUIRE(!a.layers.empty());
      size_t readers = 0, attn_in = 0, attn_o = 0, biases = 0;
      for (const auto& [layer, l] : a.layers) {
        readers += l.norm.readers.size() + (l.attn_in.defined() ? l.attn_norm.readers.size() : 0);
        attn_in += l.attn_in.defined();
        attn_o += l.attn_o.defined();
        biases += l.attn_o.defined() && !l.vo.v_bias.empty();
      }
      INFO(fam << ": " << readers << " non-expert readers folded; attention input folds " << attn_in << ", o folds " << attn_o
               << " (v biases " << biases << ")");
      // Every family declares its attention input's fold on every layer; the v -> o fold is
      // refused for Gemma4 (v_norm) and DeepSeek-V3 (MLA), and for Qwen3.5's linear layers.
      CHECK(attn_in > 0);
      if (fam == "gemma4" || fam == "deepseek_v3") CHECK(attn_o == 0);
      else CHECK(attn_o > 0);
      if (fam == "gpt_oss") CHECK(biases == attn_o);
      o.weight_transform = [&](const Site& s, const at::Tensor& w) { return awq_fold_weight(a, s, w).to(w.scalar_type()); };
      const std::map<std::string, at::Tensor> norms = folded_aux(m, a);
      o.aux_transform = [&](const std::string& name, const at::Tensor& t) {
        auto it = norms.find(name);
        return it == norms.end() ? t : it->second.to(t.device());
      };
      const at::Tensor got = logits_of(m, ids, o);
      const double scale = ref.abs().max().item<double>();
      const double err = (got - ref).abs().max().item<double>();
      INFO("max |logit diff| " << err << " of max |logit| " << scale);
      CHECK(err <= 2e-4 * std::max(1.0, scale));
      // A fold that leaves v's rows alone is far off (o's scales matter), and so is one that
      // leaves the norms alone: the test can fail.
      if (attn_o > 0) {
        ForwardOptions no_v = o;
        no_v.weight_transform = [&](const Site& s, const at::Tensor& w) {
          if (s.role == Role::Attention && s.proj == "v") return w;
          return awq_fold_weight(a, s, w).to(w.scalar_type());
        };
        CHECK((logits_of(m, ids, no_v) - ref).abs().max().item<double>() > 100 * err);
      }
      o.aux_transform = nullptr;
      CHECK((logits_of(m, ids, o) - ref).abs().max().item<double>() > 100 * err);
    }
  }
}

TEST_CASE("awq fold: (1 + w) norms and plain norms divide the output by s", "[awq]") {
  const at::Tensor w = at::tensor({0.5f, -0.25f, 2.0f});
  const at::Tensor s = at::tensor({2.0f, 0.5f, 4.0f});
  CHECK(at::allclose(awq_fold_norm(w, s, false), at::tensor({0.25f, -0.5f, 0.5f})));
  CHECK(at::allclose(1 + awq_fold_norm(w, s, true), (1 + w) / s));
}

TEST_CASE("awq shared search: one scale for all experts, s = 1 candidate, token weighting", "[awq]") {
  at::manual_seed(3);
  const int64_t E = 3, out = 8, in = 32;
  const at::Tensor W = at::randn({E, out, in});
  const at::Tensor X = at::randn({E, 64, in}) * at::linspace(0.1, 5, in);
  const at::Tensor H = 2.0 / 64 * at::bmm(X.transpose(1, 2), X);
  const at::Tensor n = at::tensor({64, 64, 0}, at::kLong);
  // INT4-like rounding per block of 16: amax / 7.
  const AwqFakeQuant fq = [](const at::Tensor& w) {
    const at::Tensor b = w.reshape({w.size(0), w.size(1), -1, 16});
    const at::Tensor sc = b.abs().amax(-1, true).clamp_min(1e-8) / 7;
    return ((b / sc).round().clamp(-8, 7) * sc).reshape(w.sizes());
  };
  const AwqSharedResult r = awq_shared_search(W, H, n, 16, fq, 0.25);
  REQUIRE(r.alphas.size() == 5);
  REQUIRE(r.scales.sizes() == at::IntArrayRef({in}));
  // Loss at the best alpha recomputed by hand (expert 2, no rows, weighs nothing).
  const at::Tensor s = r.scales.view({1, 1, -1});
  const at::Tensor d = W - fq(W * s) / s;
  const at::Tensor per = (at::bmm(d, H) * d).sum({1, 2}) / (2.0 * out);
  CHECK(r.loss[r.best].item<double>() == Catch::Approx(((per[0] + per[1]) / 2).item<double>()).epsilon(1e-5));
  CHECK(r.loss.min().item<double>() == r.loss[r.best].item<double>());
  REQUIRE_ERROR_MENTIONS(awq_shared_search(W, H, at::zeros({E}, at::kLong), 16, fq, 0.25), "no expert");
}

TEST_CASE("awq fold: a family that declares no fold is refused, naming it", "[awq][tiny]") {
  Model m = open_model(test::tiny_dir() + "/qwen3_moe/model");
  Architecture arch = *m.plugin;
  const auto decoder = arch.decoder;
  arch.decoder = [decoder](const ModelConfig& c) {
    DecoderSpec s = decoder(c);
    s.ffn.expert_input = NormFold{};  // what a plugin that says nothing gets
    s.ffn.expert_input.why_not = "a v_norm-like step between the norm and the experts";
    return s;
  };
  m.plugin = &arch;
  REQUIRE_ERROR_MENTIONS(awq_norm_fold(m, 0), "layer 0", "no exact fold", "v_norm-like", "inputs: [down]");
  arch.decoder = nullptr;
  REQUIRE_ERROR_MENTIONS(awq_norm_fold(m, 0), "no decoder spec", "inputs: [down]");
  // A declared norm the checkpoint lacks.
  arch.decoder = [decoder](const ModelConfig& c) {
    DecoderSpec s = decoder(c);
    s.ffn.expert_input.norm = "no_such_norm.weight";
    return s;
  };
  REQUIRE_ERROR_MENTIONS(awq_norm_fold(m, 1), "no_such_norm.weight");
}

TEST_CASE("awq fold: attention folds the spec makes inexact are refused, naming why", "[awq][tiny]") {
  const std::string root = test::tiny_dir();
  REQUIRE_ERROR_MENTIONS(awq_vo_fold(open_model(root + "/gemma4/model"), 0), "layer 0", "v_norm", "leave o out");
  REQUIRE_ERROR_MENTIONS(awq_vo_fold(open_model(root + "/deepseek_v3/model"), 0), "MLA", "leave o out");
  const Model q35 = open_model(root + "/qwen3_5_moe/model");
  int64_t linear_layer = -1;
  for (int64_t l = 0; l < q35.config.num_layers && linear_layer < 0; ++l)
    if (q35.plugin->decoder(q35.config).layer_types[static_cast<size_t>(l)] == "linear_attention") linear_layer = l;
  REQUIRE(linear_layer >= 0);
  REQUIRE_ERROR_MENTIONS(awq_vo_fold(q35, linear_layer), "linear attention", "gated RMSNorm");
  CHECK(awq_attn_norm_fold(q35, linear_layer).readers.size() >= 3);  // the delta net's input projections
  // OLMoE with clip_qkv: v is clamped after v_proj.
  Model m = open_model(root + "/olmoe/model");
  CHECK_NOTHROW(awq_vo_fold(m, 0));
  Architecture arch = *m.plugin;
  const auto decoder = arch.decoder;
  arch.decoder = [decoder](const ModelConfig& c) {
    DecoderSpec s = decoder(c);
    uniform_layers_of(s).attn.clip_qkv = 8;
    return s;
  };
  m.plugin = &arch;
  REQUIRE_ERROR_MENTIONS(awq_vo_fold(m, 0), "clip_qkv");
  // The head grouping: o's scales tie over the heads of a kv group.
  const at::Tensor x = at::arange(2 * 3 * 4, at::kFloat);
  const at::Tensor t = awq_tie_heads(x, /*kv_heads=*/2, /*group=*/3, /*head_dim=*/4).view({2, 3, 4});
  CHECK(at::equal(t.select(1, 0), t.select(1, 2)));
  CHECK(t[0][0][0].item<float>() == 4.0f);  // mean of 0, 4, 8
  CHECK(t[1][1][3].item<float>() == 19.0f);  // mean of 15, 19, 23
}
