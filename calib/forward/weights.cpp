#include "calib/forward/weights.h"

#include "core/error.h"
#include "io/aten_view.h"

namespace moeq::fwd {
namespace {
std::string keys_of(const std::map<std::string, at::Tensor>& m) {
  std::string out;
  for (const auto& kv : m) out += (out.empty() ? "" : ", ") + kv.first;
  return out.empty() ? "(none)" : out;
}
std::string where(int64_t layer) { return layer < 0 ? std::string("the model's globals") : "layer " + std::to_string(layer); }
}  // namespace

const at::Tensor& LayerWeights::w(const std::string& key) const {
  auto it = linear.find(key);
  if (it == linear.end())
    throw Error("native forward: " + where(layer) + " has no linear weight '" + key + "' (has: " + keys_of(linear) +
                "); the checkpoint lacks it or the plugin does not map it");
  return it->second;
}
const at::Tensor& LayerWeights::a(const std::string& key) const {
  auto it = aux.find(key);
  if (it == aux.end())
    throw Error("native forward: " + where(layer) + " has no tensor '" + key + "' (has: " + keys_of(aux) + ")");
  return it->second;
}
at::Tensor LayerWeights::w_opt(const std::string& key) const {
  auto it = linear.find(key);
  return it == linear.end() ? at::Tensor() : it->second;
}
at::Tensor LayerWeights::a_opt(const std::string& key) const {
  auto it = aux.find(key);
  return it == aux.end() ? at::Tensor() : it->second;
}
const Site* LayerWeights::site(const std::string& key) const {
  auto it = sites.find(key);
  return it == sites.end() ? nullptr : it->second;
}
int64_t LayerWeights::bytes() const {
  int64_t n = 0;
  for (const auto& kv : linear) n += kv.second.nbytes();
  for (const auto& kv : aux) n += kv.second.nbytes();
  if (experts.gate_up.defined()) n += experts.gate_up.nbytes() + experts.down.nbytes();
  return n;
}

WeightLoader::WeightLoader(std::shared_ptr<Checkpoint> ckpt, const SiteMap& sites, const ForwardOptions& options)
    : ckpt_(std::move(ckpt)), sites_(sites), options_(options) {
  for (const Site& s : sites_.sites)
    if (s.name == "embed_tokens") {
      const std::string suffix = "embed_tokens.weight";
      const std::string& t = s.view.tensor;
      if (t.size() >= suffix.size() && t.compare(t.size() - suffix.size(), suffix.size(), suffix) == 0)
        prefix_ = t.substr(0, t.size() - suffix.size());
    }
  if (prefix_.empty())
    throw Error("native forward: no `<prefix>embed_tokens.weight` site in '" + ckpt_->dir() +
                "'; cannot tell where the text model's tensors live");
}

at::Tensor WeightLoader::load_site(const Site& s) const {
  at::Tensor w = site_weight(*ckpt_, s).to(options_.device, options_.dtype);
  if (options_.weight_transform) {
    at::Tensor t = options_.weight_transform(s, w);
    if (!t.defined() || t.sizes() != w.sizes())
      throw Error("native forward: weight_transform returned a tensor of another shape for site '" + s.name + "'");
    w = t.to(options_.device, options_.dtype);
  }
  return w.contiguous();
}

at::Tensor WeightLoader::load_aux(const std::string& tensor) const {
  return tensor_view(*ckpt_, tensor).to(options_.device, options_.dtype);
}

LayerWeights WeightLoader::load_layer(int64_t layer) const {
  LayerWeights out;
  out.layer = layer;
  const std::string site_prefix = "layers." + std::to_string(layer) + ".";
  std::map<int64_t, std::map<std::string, const Site*>> experts;  // expert -> proj -> site
  for (const Site& s : sites_.sites) {
    if (s.layer != layer) continue;
    if (s.role == Role::Expert && s.expert >= 0) {
      experts[s.expert][s.proj] = &s;
      continue;
    }
    std::string key = s.name.compare(0, site_prefix.size(), site_prefix) == 0 ? s.name.substr(site_prefix.size()) : s.name;
    out.linear[key] = load_site(s);
    out.sites[key] = &s;
  }
  const std::string tensor_layer = "layers." + std::to_string(layer) + ".";
  for (const AuxTensor& a : sites_.aux) {
    if (a.layer != layer) continue;
    const size_t pos = a.tensor.find(tensor_layer);
    if (pos == std::string::npos) continue;
    out.aux[a.tensor.substr(pos + tensor_layer.size())] = load_aux(a.tensor);
  }
  if (experts.empty()) return out;
  const int64_t E = experts.rbegin()->first + 1;
  for (int64_t e = 0; e < E; ++e) {
    auto it = experts.find(e);
    for (const char* p : {"gate", "up", "down"})
      if (it == experts.end() || !it->second.count(p))
        throw Error("native forward: layer " + std::to_string(layer) + " of '" + ckpt_->dir() + "' lacks expert " +
                    std::to_string(e) + "'s " + p + " projection (experts 0.." + std::to_string(E - 1) +
                    " are expected); the checkpoint is incomplete");
  }
  const Site& g0 = *experts[0]["gate"];
  const Site& d0 = *experts[0]["down"];
  const int64_t I = g0.view.rows, H = g0.view.cols;
  auto opts = at::TensorOptions().device(options_.device).dtype(options_.dtype);
  out.experts.gate_up = at::empty({E, 2 * I, H}, opts);
  out.experts.down = at::empty({E, d0.view.rows, d0.view.cols}, opts);
  for (int64_t e = 0; e < E; ++e) {
    auto& p = experts[e];
    out.experts.gate_up[e].narrow(0, 0, I).copy_(load_site(*p["gate"]));
    out.experts.gate_up[e].narrow(0, I, I).copy_(load_site(*p["up"]));
    out.experts.down[e].copy_(load_site(*p["down"]));
  }
  return out;
}

LayerWeights WeightLoader::load_globals(const std::vector<std::string>& site_names,
                                        const std::vector<std::string>& aux_names) const {
  LayerWeights out;
  for (const Site& s : sites_.sites)
    for (const auto& n : site_names)
      if (s.layer < 0 && s.name == n) {
        out.linear[n] = load_site(s);
        out.sites[n] = &s;
      }
  for (const auto& n : aux_names)
    if (ckpt_->has(prefix_ + n)) out.aux[n] = load_aux(prefix_ + n);
  return out;
}

}  // namespace moeq::fwd
