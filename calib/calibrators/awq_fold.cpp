#include "calib/calibrators/awq_fold.h"

#include "calib/calibrators/awq_job.h"
#include "calib/calibrators/awq_norm.h"
#include "core/error.h"
#include "tensor/aten_view.h"

namespace moeq {
namespace {

bool ends_with(const std::string& s, const std::string& t) {
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

const AwqScales::Layer* layer_of(const AwqScales& a, int64_t layer) {
  auto it = a.layers.find(layer);
  return it == a.layers.end() ? nullptr : &it->second;
}

}  // namespace

AwqNormFold awq_norm_fold(const Model& model, int64_t layer) {
  const std::string where = model.config.path + ": layer " + std::to_string(layer) + ": AWQ on the routed experts' gate/up input";
  if (!model.plugin || !model.plugin->decoder)
    throw Error(where + ": family " + (model.plugin ? model.plugin->family : std::string("?")) +
                " has no decoder spec, so moeq does not know which norm feeds the experts; use awq inputs: [down]");
  const NormFold f = model.plugin->decoder(model.config).ffn.expert_input;
  if (!f.allowed())
    throw Error(where + ": no exact fold for " + model.plugin->family + " (" + f.why_not + "); use awq inputs: [down]");
  AwqNormFold out;
  out.one_plus = f.one_plus;
  const std::string suffix = "layers." + std::to_string(layer) + "." + f.norm;
  for (const AuxTensor& x : model.sites.aux)
    if (x.layer == layer && ends_with(x.tensor, suffix)) out.norm_tensor = x.tensor;
  if (out.norm_tensor.empty())
    throw Error(where + ": the plugin of " + model.plugin->family + " says " + f.norm + " feeds the experts, but the checkpoint has no "
                "tensor ..." + suffix);
  const std::string pre = "layers." + std::to_string(layer) + ".";
  for (const std::string& r : f.readers) {
    if (r.rfind("experts.", 0) == 0) continue;  // the routed experts' gate/up: folded by their own jobs
    for (const Site& s : model.sites.sites)
      if (s.layer == layer && s.role != Role::Expert && s.name == pre + r) out.readers.insert(s.name);
  }
  return out;
}

at::Tensor awq_input_scales(const AwqScales& a, const Site& site) {
  const AwqScales::Layer* l = layer_of(a, site.layer);
  if (!l) return at::Tensor();
  if (site.role == Role::Expert && site.expert >= 0) {
    if (site.proj == "down") return l->scales.defined() ? l->scales.select(0, site.expert) : at::Tensor();
    if (site.proj == "gate" || site.proj == "up") return l->gate_up;
    return at::Tensor();
  }
  return l->gate_up.defined() && l->norm.readers.count(site.name) ? l->gate_up : at::Tensor();
}

at::Tensor awq_fold_weight(const AwqScales& a, const Site& site, const at::Tensor& w) {
  const AwqScales::Layer* l = layer_of(a, site.layer);
  if (!l) return w;
  at::Tensor out = w;
  const bool expert = site.role == Role::Expert && site.expert >= 0;
  if (expert && (site.proj == "up" || site.proj == "down") && l->scales.defined()) {
    const at::Tensor s = l->scales.select(0, site.expert).to(w.device());
    out = site.proj == "up" ? out.to(at::kFloat) / s.unsqueeze(-1) : out.to(at::kFloat) * s.unsqueeze(0);
  }
  const at::Tensor g = awq_input_scales(a, site);
  if (g.defined() && site.proj != "down") out = out.to(at::kFloat) * g.to(w.device()).unsqueeze(0);
  return out;
}

std::map<std::string, at::Tensor> awq_folded_tensors(const AwqScales& a, const Checkpoint& ck, const SiteMap& sites) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [layer, l] : a.layers) {
    if (!l.gate_up.defined()) continue;
    const at::Tensor nw = tensor_view(ck, l.norm.norm_tensor);
    out[l.norm.norm_tensor] = awq_fold_norm(nw, l.gate_up, l.norm.one_plus).to(nw.scalar_type()).contiguous();
    for (const Site& s : sites.sites) {
      if (!l.norm.readers.count(s.name)) continue;
      const WeightView& v = s.view;
      if (s.fused || v.transpose || v.expert >= 0 || v.source != SourceFormat::Plain || v.row_start != 0 || v.row_step != 1 ||
          ck.info(v.tensor).shape.size() != 2 || ck.info(v.tensor).shape[0] != v.rows)
        throw Error(s.name + " (" + v.tensor + "): reads the norm AWQ folds, but is stored in a way moeq does not fold "
                    "(not one plain 2D tensor); use awq inputs: [down]");
      const at::Tensor w = tensor_view(ck, v.tensor);
      out[v.tensor] = awq_fold_weight(a, s, w).to(w.scalar_type()).contiguous();
    }
  }
  return out;
}

}  // namespace moeq
