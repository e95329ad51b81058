#include "calib/calibrators/awq_attn.h"

#include <algorithm>
#include <cfloat>
#include <map>
#include <optional>
#include <set>

#include "calib/calibrators/awq_fold.h"
#include "calib/calibrators/awq_norm.h"
#include "calib/calibrators/awq_quant.h"
#include "calib/hessian_file.h"
#include "core/error.h"
#include "formats/format.h"
#include "tensor/aten_view.h"

namespace moeq {
namespace {

struct Searched {
  at::Tensor scales;  // undefined: s = 1
  double alpha = -1, gain = 1;
};

// awq_shared_search on one linear input (E = 1), with the fallbacks of the expert searches:
// too few calibration rows, or no alpha below s = 1.
Searched search_input(const std::string& what, const at::Tensor& W, const at::Tensor& H, int64_t rows, const SitePlan& first,
                      const AwqTie& tie, std::vector<std::string>& fallbacks) {
  const WeightCalibrator& cal = first.calibrator;
  const QuantFormat& fmt = format_by_name(first.format);
  const at::Tensor W3 = W.unsqueeze(0);
  if (H.size(0) != W.size(1))
    throw Error(cal.hessians->path() + ": the Hessian of " + what + " is " + std::to_string(H.size(0)) + " wide, the weights have " +
                std::to_string(W.size(1)) + " inputs");
  Searched out;
  if (rows < cal.gptq_min_tokens) {
    fallbacks.push_back(what + ": " + std::to_string(rows) + " calibration rows < min_tokens " + std::to_string(cal.gptq_min_tokens) +
                        ": s = 1 (plain " + first.format + ")");
    return out;
  }
  const AwqSharedResult r = awq_shared_search(W3, H.unsqueeze(0), at::tensor({rows}, at::kLong), awq_format_block(fmt, first, W3),
                                              awq_fake_quant(fmt, first.params), cal.awq_alpha_step, tie);
  const double best = r.loss[r.best].item<double>();
  if (!(best < r.plain)) {
    fallbacks.push_back(what + ": no alpha lowers the output error below s = 1: s = 1 (plain " + first.format + ")");
    return out;
  }
  out.scales = r.scales.contiguous();
  out.alpha = r.alphas[static_cast<size_t>(r.best)];
  out.gain = r.plain > 0 ? best / r.plain : 1.0;
  return out;
}

void require_one_format(const std::vector<const SitePlan*>& sites, const std::string& what) {
  for (const SitePlan* sp : sites)
    if (sp->format != sites[0]->format || sp->params.block_size != sites[0]->params.block_size)
      throw Error(sp->site->name + ": calibrator awq on " + what + " needs its readers quantized in one format (" +
                  sites[0]->site->name + " is " + sites[0]->format + ", this one " + sp->format + ")");
}

}  // namespace

at::Tensor awq_tie_heads(const at::Tensor& x, int64_t kv_heads, int64_t group, int64_t head_dim) {
  if (x.dim() != 1 || x.numel() != kv_heads * group * head_dim)
    throw Error("awq (o_proj): " + std::to_string(x.numel()) + " input channels, not kv_heads x group x head_dim = " +
                std::to_string(kv_heads * group * head_dim));
  const at::Tensor g = x.reshape({kv_heads, group, head_dim});
  return g.mean(1, /*keepdim=*/true).expand({kv_heads, group, head_dim}).reshape({-1}).contiguous();
}

void attach_attention_scales(AwqScales& out, int64_t layer, const std::vector<const SitePlan*>& sites, const Model& model,
                             const at::Device& dev) {
  const Checkpoint& ck = *model.checkpoint;
  const WeightCalibrator& cal = sites[0]->calibrator;
  const HessianFile& hf = *cal.hessians;
  AwqScales::Layer& L = out.layers[layer];
  std::map<std::string, const SitePlan*> awq;  // site name -> plan, this layer's attention awq sites
  for (const SitePlan* sp : sites) awq[sp->site->name] = sp;
  std::set<std::string> scaled;  // awq sites whose input got scales
  std::map<std::string, std::string> why;  // awq site -> why its input has none (a refused fold)
  auto refused = [&](const Error& e, bool asked) {
    if (asked && cal.awq_inputs_given) throw e;
    return std::string(e.what());
  };
  auto weight = [&](const Site& s) { return site_weight(ck, s).to(dev).to(at::kFloat); };

  // o_proj's input first: its fold divides v's rows, which the qkv search then sees.
  auto is_o = [](const SitePlan* sp) { return sp->site->proj == "o" || sp->site->proj == "out_proj"; };
  const bool has_o = std::any_of(sites.begin(), sites.end(), is_o);
  std::optional<AwqVoFold> vo;
  std::string vo_why;
  if (cal.awq_o && has_o) {
    try {
      vo = awq_vo_fold(model, layer);
    } catch (const Error& e) {
      vo_why = refused(e, /*asked=*/true);
    }
  }
  // A site whose input the calibration forward does not report has no Hessian: s = 1, listed.
  auto no_hessian = [&](const std::string& site, const SitePlan& sp) {
    if (hf.has_linear(site)) return false;
    out.fallbacks.push_back(site + ": " + hf.path() + " has no Hessian of its input (the calibration forward does not report it): "
                            "s = 1 (plain " + sp.format + ")");
    return true;
  };
  if (vo && awq.count(vo->o_site) && !no_hessian(vo->o_site, *awq.at(vo->o_site))) {
    const SitePlan& o = *awq.at(vo->o_site);
    const AwqVoFold f = *vo;
    const AwqTie tie = [f](const at::Tensor& x) { return awq_tie_heads(x, f.kv_heads, f.group, f.head_dim); };
    const Searched s = search_input(f.o_site, weight(*o.site), hf.linear_hessian(f.o_site).to(dev), hf.linear_tokens(f.o_site), o, tie,
                                    out.fallbacks);
    if (s.scales.defined()) {
      // Any constant factor gives o the same error; this one keeps the folded v's amax (v shares
      // q/k's NVFP4 global scale).
      const Site* v = nullptr;
      for (const Site& x : model.sites.sites)
        if (x.name == f.v_site) v = &x;
      const at::Tensor rows = site_weight(ck, *v).to(at::kFloat).abs().amax(-1);  // [kv * D]
      const at::Tensor sv = awq_v_row_scales(f, s.scales);
      const double c = (rows / sv).max().item<double>() / std::max(rows.max().item<double>(), static_cast<double>(FLT_MIN));
      L.attn_o = c > 0 ? (s.scales * c).contiguous() : s.scales;
      L.attn_o_alpha = s.alpha;
      L.attn_o_gain = s.gain;
      L.vo = f;
      scaled.insert(f.o_site);
    }
  }

  // q/k/v's input: the norm before attention.
  std::optional<AwqNormFold> norm;
  std::string norm_why;
  if (cal.awq_qkv) {
    try {
      norm = awq_attn_norm_fold(model, layer);
    } catch (const Error& e) {
      norm_why = refused(e, /*asked=*/true);
    }
  }
  if (norm) {
    std::vector<const SitePlan*> readers;
    for (const std::string& r : norm->readers)
      if (awq.count(r)) readers.push_back(awq.at(r));
    if (!readers.empty() && !no_hessian(readers[0]->site->name, *readers[0])) {
      require_one_format(readers, "the attention's input");
      std::vector<at::Tensor> rows;
      for (const SitePlan* sp : readers) {
        at::Tensor w = weight(*sp->site);
        if (L.attn_o.defined() && sp->site->name == L.vo.v_site) w = w / awq_v_row_scales(L.vo, L.attn_o).to(dev).unsqueeze(-1);
        rows.push_back(w);
      }
      const std::string first = readers[0]->site->name;
      const at::Tensor H = hf.linear_hessian(first).to(dev);
      std::string what = "layers." + std::to_string(layer) + ".attn input (";
      for (size_t i = 0; i < readers.size(); ++i) what += (i ? ", " : "") + readers[i]->site->name;
      const Searched s = search_input(what + ")", at::cat(rows, 0), H, hf.linear_tokens(first), *readers[0], nullptr, out.fallbacks);
      if (s.scales.defined()) {
        L.attn_in = s.scales;
        L.attn_in_alpha = s.alpha;
        L.attn_in_gain = s.gain;
        L.attn_norm = *norm;
      }
    }
    for (const SitePlan* sp : readers) scaled.insert(sp->site->name);
  }

  // Every other awq site: quantized without scales, and said so.
  for (const auto& [name, sp] : awq) {
    if (scaled.count(name)) continue;
    if (vo && name == vo->o_site) continue;  // searched; a fallback is listed
    std::string reason = "its input is neither the attention's input norm nor the attention output moeq folds";
    if (is_o(sp)) {
      if (!cal.awq_o) reason = "awq inputs leave o out";
      else if (!vo_why.empty()) reason = vo_why;
    } else if (!cal.awq_qkv) {
      reason = "awq inputs leave qkv out";
    } else if (!norm_why.empty()) {
      reason = norm_why;
    }
    out.fallbacks.push_back(name + ": no AWQ scales (" + reason + "): plain " + sp->format);
  }
}

}  // namespace moeq
