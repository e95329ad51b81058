#include "calib/forward/weights.h"

#include <ATen/Parallel.h>

#include "core/error.h"
#include "tensor/aten_view.h"
#include "tensor/site_errors.h"

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

at::Tensor WeightLoader::host_for(const at::Tensor& src, std::vector<Copy>& copies) const {
  const bool pinned = options_.device.is_cuda();
  if (!pinned && src.scalar_type() == options_.dtype && src.is_contiguous()) return src;  // the mmap view itself
  at::Tensor dst = at::empty(src.sizes(), at::TensorOptions().dtype(options_.dtype).pinned_memory(pinned));
  copies.push_back({dst, src});
  return dst;
}

void WeightLoader::run_copies(std::vector<Copy>& copies) const {
  // Reading the mmap faults its pages in: spread over the intra-op threads, one tensor each.
  at::parallel_for(0, static_cast<int64_t>(copies.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) copies[i].dst.copy_(copies[i].src);
  });
  copies.clear();
}


namespace {
// The site's view of its stored tensor; errors name the site (quant/site_errors.h).
at::Tensor weight_of(const Checkpoint& ck, const Site& s) {
  return with_site_context(ck, s, [&] { return site_weight(ck, s); });
}
}  // namespace

LayerWeights WeightLoader::stage_layer(int64_t layer) const {
  LayerWeights out;
  out.layer = layer;
  std::vector<Copy> copies;
  const std::string site_prefix = "layers." + std::to_string(layer) + ".";
  std::map<int64_t, std::map<std::string, const Site*>> experts;  // expert -> proj -> site
  for (const Site& s : sites_.sites) {
    if (s.layer != layer) continue;
    if (s.role == Role::Expert && s.expert >= 0) {
      experts[s.expert][s.proj] = &s;
      continue;
    }
    std::string key = s.name.compare(0, site_prefix.size(), site_prefix) == 0 ? s.name.substr(site_prefix.size()) : s.name;
    out.linear[key] = host_for(weight_of(*ckpt_, s), copies);
    out.sites[key] = &s;
  }
  const std::string tensor_layer = "layers." + std::to_string(layer) + ".";
  for (const AuxTensor& a : sites_.aux) {
    if (a.layer != layer) continue;
    const size_t pos = a.tensor.find(tensor_layer);
    if (pos == std::string::npos) continue;
    out.aux[a.tensor.substr(pos + tensor_layer.size())] = host_for(tensor_view(*ckpt_, a.tensor), copies);
    out.aux_tensor[a.tensor.substr(pos + tensor_layer.size())] = a.tensor;
  }
  if (experts.empty()) {
    run_copies(copies);
    return out;
  }
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
  auto opts = at::TensorOptions().dtype(options_.dtype).pinned_memory(options_.device.is_cuda());
  ExpertStack& st = out.experts;
  st.gate_up = at::empty({E, 2 * I, H}, opts);
  st.down = at::empty({E, d0.view.rows, d0.view.cols}, opts);
  for (int64_t e = 0; e < E; ++e) {
    auto& p = experts[e];
    st.gate_sites.push_back(p["gate"]);
    st.up_sites.push_back(p["up"]);
    st.down_sites.push_back(p["down"]);
    copies.push_back({st.gate_up[e].narrow(0, 0, I), weight_of(*ckpt_, *p["gate"])});
    copies.push_back({st.gate_up[e].narrow(0, I, I), weight_of(*ckpt_, *p["up"])});
    copies.push_back({st.down[e], weight_of(*ckpt_, *p["down"])});
  }
  run_copies(copies);
  return out;
}

LayerWeights WeightLoader::stage_globals(const std::vector<std::string>& site_names,
                                         const std::vector<std::string>& aux_names) const {
  LayerWeights out;
  std::vector<Copy> copies;
  for (const Site& s : sites_.sites)
    for (const auto& n : site_names)
      if (s.layer < 0 && s.name == n) {
        out.linear[n] = host_for(weight_of(*ckpt_, s), copies);
        out.sites[n] = &s;
      }
  for (const auto& n : aux_names)
    if (ckpt_->has(prefix_ + n)) {
      out.aux[n] = host_for(tensor_view(*ckpt_, prefix_ + n), copies);
      out.aux_tensor[n] = prefix_ + n;
    }
  run_copies(copies);
  return out;
}

LayerWeights WeightLoader::upload(const LayerWeights& staged) const {
  if (options_.device.is_cpu()) return staged;
  auto up = [&](const at::Tensor& t) { return t.to(options_.device, /*non_blocking=*/true); };
  LayerWeights out = staged;
  for (auto& kv : out.linear) kv.second = up(kv.second);
  for (auto& kv : out.aux) kv.second = up(kv.second);
  if (out.experts.gate_up.defined()) {
    out.experts.gate_up = up(out.experts.gate_up);
    out.experts.down = up(out.experts.down);
  }
  return out;
}

void WeightLoader::transform(LayerWeights& w) const {
  if (options_.aux_transform)
    for (auto& [key, t] : w.aux) {
      const at::Tensor r = options_.aux_transform(w.aux_tensor.at(key), t);
      if (!r.defined() || r.sizes() != t.sizes())
        throw Error("native forward: aux_transform returned a tensor of another shape for '" + w.aux_tensor.at(key) + "'");
      t = r.to(options_.device, options_.dtype);
    }
  if (!options_.weight_transform) return;
  auto apply = [&](const Site& s, const at::Tensor& weight) {
    return with_site_context(*ckpt_, s, [&] {
      at::Tensor t = options_.weight_transform(s, weight);
      if (!t.defined() || t.sizes() != weight.sizes())
        throw Error("native forward: weight_transform returned a tensor of another shape for site '" + s.name + "'");
      return t.to(options_.device, options_.dtype);
    });
  };
  // A CPU forward's weights may alias the read-only mmap: replaced, never written.
  for (auto& kv : w.linear) kv.second = apply(*w.sites.at(kv.first), kv.second).contiguous();
  ExpertStack& st = w.experts;
  if (!st.gate_up.defined()) return;
  const int64_t I = st.inter();
  for (size_t e = 0; e < st.gate_sites.size(); ++e) {
    at::Tensor gu = st.gate_up[static_cast<int64_t>(e)];
    gu.narrow(0, 0, I).copy_(apply(*st.gate_sites[e], gu.narrow(0, 0, I)));
    gu.narrow(0, I, I).copy_(apply(*st.up_sites[e], gu.narrow(0, I, I)));
    st.down[static_cast<int64_t>(e)].copy_(apply(*st.down_sites[e], st.down[static_cast<int64_t>(e)]));
  }
}

LayerWeights WeightLoader::load_layer(int64_t layer) const {
  LayerWeights w = upload(stage_layer(layer));
  transform(w);
  return w;
}

LayerWeights WeightLoader::load_globals(const std::vector<std::string>& site_names,
                                        const std::vector<std::string>& aux_names) const {
  LayerWeights w = upload(stage_globals(site_names, aux_names));
  transform(w);
  return w;
}

}  // namespace moeq::fwd
