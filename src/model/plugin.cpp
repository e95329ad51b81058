#include "model/plugin.h"

#include <algorithm>
#include <map>
#include <set>
#include <unordered_set>

#include "core/error.h"
#include "model/source_quant.h"

namespace moeq {
namespace {

int role_rank(Role r) { return static_cast<int>(r); }

int proj_rank(const std::string& p) {
  static const char* order[] = {"q", "q_a", "q_b", "k", "v", "kv_a", "kv_b", "o", "router", "gate", "up", "down"};
  for (int i = 0; i < static_cast<int>(sizeof order / sizeof *order); ++i)
    if (p == order[i]) return i;
  return 100;
}

[[noreturn]] void shape_error(const TensorInfo& t, const std::string& expected) {
  std::string got = "[";
  for (size_t i = 0; i < t.shape.size(); ++i) got += (i ? ", " : "") + std::to_string(t.shape[i]);
  got += "]";
  throw Error("tensor '" + t.name + "': shape " + got + " does not fit the plugin layout (expected " + expected + ")");
}

Site make_site(const Rule& r, const Captures& c, const std::string& tensor, const std::string& name_templ,
               const std::string& proj) {
  Site s;
  s.name = expand_template(name_templ, c, r.alias);
  s.role = r.role;
  s.layer = c.layer >= 0 ? c.layer + r.layer_offset : -1;
  s.expert = c.expert;
  s.proj = expand_template(proj, c, r.alias);
  s.view.tensor = tensor;
  return s;
}

// A decoder layer past num_hidden_layers is a multi-token-prediction layer, not part of the
// trunk (DeepSeek-V3's `model.layers.61`, GLM-4.5-Air's 46, GLM-4.5's 92; transformers 5.17
// drops them on load: `_keys_to_ignore_on_load_unexpected = [r"model\.layers\.61.*"]` in
// modeling_deepseek_v3.py, `model\.layers\.46.*` / `92.*` in modeling_glm4_moe.py). Every
// site and aux tensor there becomes role mtp, its site name prefixed `mtp.`. A layer past
// num_hidden_layers + num_nextn_predict_layers (when the config declares it) is an error.
void mark_mtp(const ModelConfig& cfg, const TensorInfo& t, size_t first_site, size_t first_aux, SiteMap* out) {
  auto check = [&](int64_t layer) {
    if (cfg.num_mtp_layers > 0 && layer >= cfg.num_layers + cfg.num_mtp_layers)
      throw Error("tensor '" + t.name + "': layer " + std::to_string(layer) + " is past the trunk's " +
                  std::to_string(cfg.num_layers) + " layers and the config's " + std::to_string(cfg.num_mtp_layers) +
                  " MTP layers (" + cfg.path + ")");
  };
  for (size_t i = first_site; i < out->sites.size(); ++i) {
    Site& s = out->sites[i];
    if (s.layer < cfg.num_layers) continue;
    check(s.layer);
    s.role = Role::Mtp;
    if (s.name.rfind("mtp.", 0) != 0) s.name = "mtp." + s.name;
  }
  for (size_t i = first_aux; i < out->aux.size(); ++i)
    if (out->aux[i].layer >= cfg.num_layers) {
      check(out->aux[i].layer);
      out->aux[i].role = Role::Mtp;
    }
}

void apply_rule(const Rule& r, const Captures& cap, const TensorInfo& t, const ModelConfig& cfg, SiteMap* out) {
  const auto& sh = t.shape;
  switch (r.layout) {
    case Layout::Aux:
      out->aux.push_back(AuxTensor{t.name, r.role, cap.layer >= 0 ? cap.layer + r.layer_offset : -1, r.what});
      return;
    case Layout::Linear: {
      if (sh.size() != 2) shape_error(t, "2D [out, in]");
      Site s = make_site(r, cap, t.name, r.site, r.proj);
      s.module = t.name.size() > 7 && t.name.compare(t.name.size() - 7, 7, ".weight") == 0
                     ? t.name.substr(0, t.name.size() - 7) : t.name;
      s.view.rows = sh[0];
      s.view.cols = sh[1];
      out->sites.push_back(std::move(s));
      return;
    }
    default: break;
  }
  // 3D expert stacks (MXFP4: 4D blocks [E, out, in/32, 16]): one or two sites per expert,
  // all views into the same tensor.
  const bool mx = r.layout == Layout::Mxfp4GateUpInterleaved || r.layout == Layout::Mxfp4Experts;
  if (mx && (sh.size() != 4 || sh[3] != 16)) shape_error(t, "MXFP4 blocks [experts, out, in/32, 16]");
  if (!mx && sh.size() != 3) shape_error(t, "3D [experts, ...]");
  if (cfg.num_experts > 0 && sh[0] != cfg.num_experts)
    shape_error(t, std::to_string(cfg.num_experts) + " experts (config.json) on dim 0");
  for (int64_t e = 0; e < sh[0]; ++e) {
    Captures c = cap;
    c.expert = e;
    auto add = [&](const std::string& suffix, const std::string& proj, bool transpose, int64_t start, int64_t step,
                   int64_t rows, int64_t cols) {
      Site s = make_site(r, c, t.name, r.site + suffix, proj);
      s.fused = true;
      s.module = t.name.substr(0, t.name.rfind('.')) + "." + std::to_string(e) + "." + s.proj + "_proj";
      s.view.expert = e;
      s.view.transpose = transpose;
      s.view.row_start = start;
      s.view.row_step = step;
      s.view.rows = rows;
      s.view.cols = cols;
      out->sites.push_back(std::move(s));
    };
    switch (r.layout) {
      case Layout::Linear3DPerExpert: add("", r.proj, false, 0, 1, sh[1], sh[2]); break;
      case Layout::FusedGateUp:
        if (sh[1] % 2) shape_error(t, "[E, 2*I, in] with an even dim 1");
        add(".gate", "gate", false, 0, 1, sh[1] / 2, sh[2]);
        add(".up", "up", false, sh[1] / 2, 1, sh[1] / 2, sh[2]);
        break;
      case Layout::FusedGateUpInterleavedT:
        if (sh[2] % 2) shape_error(t, "[E, in, 2*I] with an even dim 2");
        add(".gate", "gate", true, 0, 2, sh[2] / 2, sh[1]);
        add(".up", "up", true, 1, 2, sh[2] / 2, sh[1]);
        break;
      case Layout::FusedDownT: add(".down", "down", true, 0, 1, sh[2], sh[1]); break;
      case Layout::Mxfp4GateUpInterleaved:
        if (sh[1] % 2) shape_error(t, "[E, 2*I, in/32, 16] with an even dim 1");
        add(".gate", "gate", false, 0, 2, sh[1] / 2, sh[2] * 32);
        add(".up", "up", false, 1, 2, sh[1] / 2, sh[2] * 32);
        break;
      case Layout::Mxfp4Experts: add("", r.proj, false, 0, 1, sh[1], sh[2] * 32); break;
      default: break;
    }
  }
}

}  // namespace

const ArchPlugin& plugin_for(const ModelConfig& config) {
  for (const std::string& mt : {config.model_type, config.text_model_type})
    if (const Architecture* a = Architectures::instance().find_if([&](const Architecture& x) {
          return std::find(x.model_types.begin(), x.model_types.end(), mt) != x.model_types.end();
        }))
      return *a;
  std::set<std::string> known;
  for (const auto& e : Architectures::instance().entries()) known.insert(e.item.model_types.begin(), e.item.model_types.end());
  std::string list;
  for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
  throw Error(config.path + ": no moeq plugin for model_type '" + config.model_type + "'" +
              (config.text_model_type != config.model_type ? " (text: '" + config.text_model_type + "')" : "") +
              "; known model types: " + list);
}

SiteMap map_sites(const ArchPlugin& plugin, const ModelConfig& config, const Checkpoint& ckpt) {
  std::vector<const TensorInfo*> infos;
  for (const std::string& name : ckpt.names()) infos.push_back(&ckpt.info(name));
  return map_sites(plugin, config, infos, ckpt.dir());
}

SiteMap map_sites(const ArchPlugin& plugin, const ModelConfig& config, const std::vector<const TensorInfo*>& tensors,
                  const std::string& where) {
  const std::vector<Rule> rules = plugin.rules(config);
  SiteMap out;
  std::unordered_set<std::string> names;
  for (const TensorInfo* info : tensors) names.insert(info->name);
  for (const TensorInfo* info : tensors) {
    const std::string& name = info->name;
    if (is_source_scale(name, names)) continue;  // claimed with its weight (attach_source_scales)
    const auto segs = split_name(name);
    bool claimed = false;
    for (const Rule& r : rules) {
      Captures c;
      if (!r.pattern.match(segs, &c)) continue;
      const size_t first_site = out.sites.size(), first_aux = out.aux.size();
      apply_rule(r, c, *info, config, &out);
      mark_mtp(config, *info, first_site, first_aux, &out);
      claimed = true;
      break;
    }
    if (!claimed) out.unclaimed.push_back(name);
  }
  attach_source_scales(config, tensors, where, &out);
  std::stable_sort(out.sites.begin(), out.sites.end(), [](const Site& a, const Site& b) {
    if (a.layer != b.layer) return a.layer < b.layer;
    if (a.role != b.role) return role_rank(a.role) < role_rank(b.role);
    if (a.expert != b.expert) return a.expert < b.expert;
    if (proj_rank(a.proj) != proj_rank(b.proj)) return proj_rank(a.proj) < proj_rank(b.proj);
    return a.name < b.name;
  });
  std::set<std::string> seen;
  for (const auto& s : out.sites)
    if (!seen.insert(s.name).second)
      throw Error(where + ": two tensors map to site '" + s.name + "' (plugin " + plugin.family + ")");
  bool fused = false, flat = false;
  for (const auto& s : out.sites)
    if (s.role == Role::Expert) (s.fused ? fused : flat) = true;
  out.expert_layout = fused && flat ? "mixed" : fused ? "fused 3D" : flat ? "per-expert 2D" : "none";
  return out;
}

std::vector<std::string> missing_experts(const SiteMap& map, const ModelConfig& config) {
  std::vector<std::string> problems;
  if (config.num_experts <= 0) return problems;
  std::map<int64_t, std::map<std::string, std::set<int64_t>>> by_layer;
  for (const auto& s : map.sites)
    if (s.role == Role::Expert) by_layer[s.layer][s.proj].insert(s.expert);
  for (const auto& [layer, projs] : by_layer) {
    for (const char* p : {"gate", "up", "down"}) {
      auto it = projs.find(p);
      const size_t have = it == projs.end() ? 0 : it->second.size();
      if (have != static_cast<size_t>(config.num_experts))
        problems.push_back("layer " + std::to_string(layer) + ": " + std::to_string(have) + " of " +
                           std::to_string(config.num_experts) + " experts have a " + p + " projection");
    }
  }
  return problems;
}

}  // namespace moeq
