#include "calib/stats_observer.h"

#include <cmath>

#include "core/error.h"

namespace moeq {

const char* const kFallbackRule =
    "an expert that received no token takes, for each projection input (gate/up, down), the largest amax "
    "of the experts of the same layer that did";

namespace {

// Largest rows x experts table the per-expert reductions build densely (128 MiB as float32).
constexpr int64_t kDenseLimit = int64_t(1) << 25;

std::string expert_key(const std::string& proj) { return proj == "down" ? "down" : "gate_up"; }

at::Tensor as_rows(const at::Tensor& x) { return x.dim() == 2 ? x : x.reshape({-1, x.size(-1)}); }

void update_max(std::map<std::string, at::Tensor>& m, const std::string& key, const at::Tensor& v) {
  auto it = m.find(key);
  if (it == m.end()) m.emplace(key, v.clone());
  else it->second = at::maximum(it->second, v);  // propagates NaN, which finish() reports
}

}  // namespace

StatsObserver::StatsObserver(const SiteMap& map, StatsOptions options) : map_(map), opt_(std::move(options)) {
  for (const auto& s : map_.sites)
    if (s.role == Role::Expert) num_experts_[s.layer] = std::max(num_experts_[s.layer], s.expert + 1);
}

void StatsObserver::seen_layer(int64_t layer) {
  if (layer < 0 || layer == last_layer_) return;
  last_layer_ = layer;
  if (opt_.on_layer) opt_.on_layer(layer);
}

void StatsObserver::linear_input(const std::vector<const Site*>& sites, const at::Tensor& x_in) {
  if (sites.empty()) return;
  seen_layer(sites[0]->layer);
  const at::Tensor x = as_rows(x_in);
  if (x.size(0) == 0) return;
  // One reduction for all sites sharing x; the inf-norm is max |x| without an |x| temporary
  // (and propagates NaN, which finish() reports).
  const at::Tensor amax = at::linalg_vector_norm(x, INFINITY).to(at::kFloat);
  const at::Tensor channel = opt_.channel_amax ? at::linalg_vector_norm(x, INFINITY, at::OptionalIntArrayRef(at::IntArrayRef{0})).to(at::kFloat) : at::Tensor();
  for (const Site* s : sites) {
    update_max(site_amax_, s->name, amax);
    if (opt_.channel_amax) update_max(site_channel_, s->name, channel);
  }
}

void StatsObserver::expert_input(int64_t layer, const std::string& proj, const at::Tensor& x_in,
                                 const at::Tensor& expert_of_row, const at::Tensor& counts) {
  seen_layer(layer);
  if (proj != "gate_up" && proj != "down")
    throw Error("calibration: the forward reported expert input '" + proj + "' of layer " + std::to_string(layer) +
                " (expected gate_up or down)");
  const at::Tensor x = as_rows(x_in);
  const int64_t E = counts.size(0);
  auto it = num_experts_.find(layer);
  if (it == num_experts_.end() || it->second != E)
    throw Error("calibration: the forward reported " + std::to_string(E) + " experts for layer " + std::to_string(layer) +
                ", the site map has " + (it == num_experts_.end() ? std::string("none") : std::to_string(it->second)));
  const auto f32 = x.options().dtype(at::kFloat);
  ExpertAcc& acc = experts_[{layer, proj}];
  if (!acc.amax.defined()) {
    acc.amax = at::zeros({E}, f32);
    acc.rows = at::zeros({E}, x.options().dtype(at::kLong));
    if (opt_.channel_amax) acc.channel = at::zeros({E, x.size(1)}, f32);
  }
  acc.rows.add_(counts.to(acc.rows.device(), at::kLong));
  if (x.size(0) == 0) return;
  const at::Tensor idx = expert_of_row.to(x.device(), at::kLong);
  // Segment amax: each row's max |x| (one inf-norm kernel, no |x| temporary) goes to its
  // expert's slot. NaN rows would be lost by the max reduction, so they count as +inf.
  at::Tensor row_max = at::linalg_vector_norm(x, INFINITY, at::OptionalIntArrayRef(at::IntArrayRef{1})).to(at::kFloat);
  row_max = at::where(at::isnan(row_max), at::full({}, INFINITY, f32), row_max);
  if (x.size(0) * E <= kDenseLimit) {
    // A dense [rows, E] table (the row's max in its expert's column, 0 elsewhere) reduced
    // over rows: a plain reduction, where scatter_reduce's atomics contend on E slots
    // (thousands of rows per slot) and cost more than the rest of the statistics together.
    const at::Tensor mine = idx.unsqueeze(1) == at::arange(E, idx.options()).unsqueeze(0);
    acc.amax = at::maximum(acc.amax, at::where(mine, row_max.unsqueeze(1), at::zeros({}, f32)).amax(0));
  } else {
    acc.amax.scatter_reduce_(0, idx, row_max, "amax", /*include_self=*/true);
  }
  if (opt_.channel_amax) {
    at::Tensor ch = x.abs().to(at::kFloat);
    ch = at::where(at::isnan(ch), at::full({}, INFINITY, f32), ch);
    acc.channel.scatter_reduce_(0, idx.unsqueeze(1).expand({x.size(0), x.size(1)}), ch, "amax", true);
  }
}

void StatsObserver::router(int64_t layer, const at::Tensor& topk_ids, const at::Tensor& topk_weights) {
  seen_layer(layer);
  auto it = num_experts_.find(layer);
  if (it == num_experts_.end())
    throw Error("calibration: the forward reported a router for layer " + std::to_string(layer) +
                ", but the site map has no experts in that layer");
  RouterAcc& acc = routers_[layer];
  const int64_t E = it->second;
  const at::Tensor ids = topk_ids.reshape({-1, topk_ids.size(-1)}).to(at::kLong);  // [T, k]
  const at::Tensor w = topk_weights.reshape({-1, topk_weights.size(-1)}).to(at::kFloat);
  if (!acc.load.defined()) {
    acc.load = at::zeros({E}, ids.options());
    acc.weight = at::zeros({E}, ids.options().dtype(at::kFloat));
  }
  if (ids.size(0) * E <= kDenseLimit) {
    // Per-token rows [T, E] (atomics only among a token's k choices), summed over tokens:
    // adding every choice into E slots directly contends like the expert amax above.
    acc.load.add_(at::zeros({ids.size(0), E}, ids.options()).scatter_add_(1, ids, at::ones_like(ids)).sum(0));
    acc.weight.add_(at::zeros({ids.size(0), E}, w.options()).scatter_add_(1, ids, w).sum(0));
  } else {
    acc.load.scatter_add_(0, ids.reshape({-1}), at::ones_like(ids).reshape({-1}));
    acc.weight.index_add_(0, ids.reshape({-1}), w.reshape({-1}));
  }
}

namespace {

template <typename T>
std::vector<T> host_vector(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kCPU).contiguous();
  return std::vector<T>(c.data_ptr<T>(), c.data_ptr<T>() + c.numel());
}

void require_finite(float v, const std::string& what) {
  if (!std::isfinite(v))
    throw Error("calibration: the input of " + what + " holds NaN or Inf (amax " + std::to_string(v) +
                "); the model or the data produce non-finite activations, so no input scale can be derived");
}

}  // namespace

CalibData StatsObserver::finish() const {
  CalibData d;
  d.fallback_rule = kFallbackRule;
  // Per-expert statistics on the host, with the fallback amax of each (layer, projection).
  struct HostExperts {
    std::vector<float> amax;
    std::vector<int64_t> rows;
    at::Tensor channel;  // [E, in] on the CPU
    float fallback = 0;
    at::Tensor fallback_channel;
  };
  std::map<std::pair<int64_t, std::string>, HostExperts> host;
  for (const auto& [key, acc] : experts_) {
    HostExperts h{host_vector<float>(acc.amax), host_vector<int64_t>(acc.rows), at::Tensor(), 0, at::Tensor()};
    if (acc.channel.defined()) h.channel = acc.channel.to(at::kCPU);
    std::vector<int64_t> seen;
    for (size_t e = 0; e < h.rows.size(); ++e)
      if (h.rows[e] > 0) {
        require_finite(h.amax[e], "expert " + std::to_string(e) + " of layer " + std::to_string(key.first) + " (" + key.second + ")");
        seen.push_back(static_cast<int64_t>(e));
        h.fallback = std::max(h.fallback, h.amax[e]);
      }
    if (seen.empty())
      throw Error("calibration: no expert of layer " + std::to_string(key.first) + " received a token (" + key.second +
                  "); the forward reported zero rows for every expert");
    if (h.channel.defined())
      h.fallback_channel = h.channel.index_select(0, at::tensor(seen, at::kLong)).amax(0);
    host.emplace(key, std::move(h));
  }
  for (const auto& s : map_.sites) {
    if (s.role == Role::Embedding) continue;  // its input is token ids, not activations
    CalibSite c{s.name, s.module, s.layer, s.expert, 0, false, {}};
    if (s.role == Role::Expert) {
      auto it = host.find({s.layer, expert_key(s.proj)});
      if (it == host.end()) {
        d.unobserved.push_back(s.name);
        continue;
      }
      const HostExperts& h = it->second;
      if (s.expert >= static_cast<int64_t>(h.rows.size()))
        throw Error("calibration: site " + s.name + " has expert index " + std::to_string(s.expert) + " but the forward reported " +
                    std::to_string(h.rows.size()) + " experts");
      c.fallback = h.rows[s.expert] == 0;
      c.amax = c.fallback ? h.fallback : h.amax[s.expert];
      if (h.channel.defined()) {
        const at::Tensor ch = (c.fallback ? h.fallback_channel : h.channel.select(0, s.expert)).contiguous();
        c.channel_amax.assign(ch.data_ptr<float>(), ch.data_ptr<float>() + ch.numel());
      }
    } else {
      auto it = site_amax_.find(s.name);
      if (it == site_amax_.end()) {
        d.unobserved.push_back(s.name);
        continue;
      }
      c.amax = it->second.to(at::kCPU).item<float>();
      if (auto ch = site_channel_.find(s.name); ch != site_channel_.end()) c.channel_amax = host_vector<float>(ch->second);
    }
    require_finite(c.amax, s.name + " (" + s.module + ")");
    d.sites.push_back(std::move(c));
  }
  // Routing statistics per MoE layer.
  std::map<int64_t, CalibLayer> layers;
  for (const auto& [key, h] : host) {
    CalibLayer& l = layers[key.first];
    l.layer = key.first;
    if (key.second == "gate_up") l.tokens_per_expert = h.rows;
  }
  for (const auto& [layer, h] : host)
    if (layer.second == "down") {
      auto gu = host.find({layer.first, "gate_up"});
      if (gu != host.end() && gu->second.rows != h.rows)
        throw Error("calibration: layer " + std::to_string(layer.first) +
                    ": the forward reported different rows per expert for the gate_up and down inputs");
      if (gu == host.end()) layers[layer.first].tokens_per_expert = h.rows;
    }
  for (const auto& [layer, acc] : routers_) {
    CalibLayer& l = layers[layer];
    l.layer = layer;
    l.router_load = host_vector<int64_t>(acc.load);
    l.router_weight = host_vector<float>(acc.weight);
  }
  for (auto& [layer, l] : layers) d.layers.push_back(std::move(l));
  return d;
}

}  // namespace moeq
