// `moeq inspect MODEL_DIR`: what moeq sees in a checkpoint, site by site.
#include <cctype>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "app/cli/commands.h"
#include "app/cli/parser.h"
#include "core/error.h"
#include "core/format_util.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "model/model.h"
#include "model/plugin.h"
#include "model/site_bytes.h"

namespace moeq::cli {
namespace {

struct RoleStats {
  int64_t sites = 0, aux = 0, params = 0;
  uint64_t bytes = 0;
  std::set<std::string> sources;  // how the role's weights are stored: bf16, fp8-block, mxfp4, ...
};

// A site's on-disk format: its dtype (bf16, f32, ...) or the quantized source format.
std::string source_text(const Checkpoint& ck, const Site& s) {
  if (s.view.source != SourceFormat::Plain) return source_format_name(s.view.source);
  std::string d = dtype_name(ck.info(s.view.tensor).dtype);
  for (char& c : d) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return d;
}

std::string joined(const std::set<std::string>& v) {
  std::string t;
  for (const auto& x : v) t += (t.empty() ? "" : ",") + x;
  return t.empty() ? "-" : t;
}

std::string view_text(const Site& s) {
  const WeightView& v = s.view;
  if (!s.fused && !v.transpose) return v.tensor;
  std::string t = v.tensor;
  if (v.expert >= 0) t += "[" + std::to_string(v.expert) + "]";
  if (v.transpose) t += ".T";
  if (v.row_step != 1 || v.row_start != 0 || v.transpose || s.fused)
    t += "[" + std::to_string(v.row_start) + ":" + std::to_string(v.row_start + v.rows * v.row_step) +
         (v.row_step != 1 ? ":" + std::to_string(v.row_step) : "") + "]";
  return t;
}

// What inspect counts: per role, the claimed tensors, the layers with experts, MTP and towers.
struct Inventory {
  std::map<Role, RoleStats> roles;
  std::set<std::string> site_tensors;
  uint64_t unclaimed_bytes = 0;
  std::set<int64_t> expert_layers;
  size_t claimed = 0;
  // MTP layers (past the trunk) and tower tensors: copied through unless a rule names them.
  std::set<int64_t> mtp_layers;
  size_t mtp_tensors = 0, tower_tensors = 0;
};

Inventory take_inventory(const Model& model) {
  Inventory inv;
  const std::shared_ptr<Checkpoint>& ckpt = model.checkpoint;
  const SiteMap& map = model.sites;
  for (const auto& s : map.sites) {
    auto& r = inv.roles[s.role];
    r.sites++;
    r.params += s.view.rows * s.view.cols;
    r.bytes += stored_bytes(*ckpt, s);  // scales of a quantized source included
    r.sources.insert(source_text(*ckpt, s));
    inv.site_tensors.insert(s.view.tensor);
  }
  for (const auto& a : map.source_scales) inv.site_tensors.insert(a.tensor);  // counted with their weights
  for (const auto& a : map.aux) {
    auto& r = inv.roles[a.role];
    r.aux++;
    r.params += ckpt->info(a.tensor).numel();
    r.bytes += ckpt->info(a.tensor).nbytes();
  }
  for (const auto& n : map.unclaimed) inv.unclaimed_bytes += ckpt->info(n).nbytes();
  for (const auto& s : map.sites)
    if (s.role == Role::Expert) inv.expert_layers.insert(s.layer);
  inv.claimed = inv.site_tensors.size() + map.aux.size();
  {
    std::set<std::string> mtp_t, tower_t;
    for (const auto& s : map.sites) {
      if (s.role == Role::Mtp) { mtp_t.insert(s.view.tensor); if (s.layer >= 0) inv.mtp_layers.insert(s.layer); }
      if (s.role == Role::Tower) tower_t.insert(s.view.tensor);
    }
    for (const auto& a : map.aux) {
      if (a.role == Role::Mtp) { mtp_t.insert(a.tensor); if (a.layer >= 0) inv.mtp_layers.insert(a.layer); }
      if (a.role == Role::Tower) tower_t.insert(a.tensor);
    }
    inv.mtp_tensors = mtp_t.size();
    inv.tower_tensors = tower_t.size();
  }

  return inv;
}

void print_json(const std::string& dir, const Model& model, const Inventory& inv, const std::vector<std::string>& missing,
                bool summary) {
  const ModelConfig& cfg = model.config;
  const ArchPlugin& plugin = *model.plugin;
  const std::shared_ptr<Checkpoint>& ckpt = model.checkpoint;
  const SiteMap& map = model.sites;
  nlohmann::ordered_json j;
  j["model"] = dir;
  j["model_type"] = cfg.model_type;
  j["plugin"] = plugin.family;
  j["layers"] = cfg.num_layers;
  j["hidden_size"] = cfg.hidden_size;
  j["num_experts"] = cfg.num_experts;
  j["top_k"] = cfg.num_experts_per_tok;
  j["expert_layers"] = inv.expert_layers;
  j["expert_layout"] = map.expert_layout;
  j["tensor_count"] = ckpt->names().size();
  j["tensors_claimed"] = inv.claimed;
  j["mtp_layers"] = inv.mtp_layers;
  j["mtp_tensors"] = inv.mtp_tensors;
  j["tower_tensors"] = inv.tower_tensors;
  j["unclaimed"] = map.unclaimed;
  j["missing_experts"] = missing;
  j["total_bytes"] = ckpt->total_bytes();
  for (const auto& [role, r] : inv.roles)
    j["roles"][role_name(role)] = {{"sites", r.sites}, {"aux_tensors", r.aux}, {"params", r.params}, {"bytes", r.bytes},
                                 {"source", r.sources}};
  j["source_scale_tensors"] = map.source_scales.size();
  j["source_quant_method"] = cfg.source_quant.quant_method;
  if (!summary) {
    j["sites"] = nlohmann::ordered_json::array();
    for (const auto& s : map.sites) {
      const WeightView& v = s.view;
      j["sites"].push_back({{"name", s.name}, {"role", role_name(s.role)}, {"layer", s.layer}, {"expert", s.expert},
                            {"proj", s.proj}, {"shape", {v.rows, v.cols}},
                            {"dtype", dtype_name(ckpt->info(v.tensor).dtype)}, {"tensor", v.tensor},
                            {"expert_index", v.expert}, {"transpose", v.transpose}, {"row_start", v.row_start},
                            {"row_step", v.row_step}, {"source", source_text(*ckpt, s)}});
    }
    j["aux"] = nlohmann::ordered_json::array();
    for (const auto& a : map.aux) j["aux"].push_back({{"tensor", a.tensor}, {"role", role_name(a.role)}, {"what", a.what}});
  }
  std::printf("%s\n", j.dump(1).c_str());
}

void print_tables(const std::string& dir, const Model& model, const Inventory& inv, bool summary) {
  const ModelConfig& cfg = model.config;
  const ArchPlugin& plugin = *model.plugin;
  const std::shared_ptr<Checkpoint>& ckpt = model.checkpoint;
  const SiteMap& map = model.sites;
  std::printf("model          %s\n", dir.c_str());
  std::printf("architecture   %s (model_type %s%s)\n", cfg.architectures.empty() ? "?" : cfg.architectures[0].c_str(),
              cfg.model_type.c_str(), cfg.text_model_type != cfg.model_type ? (", text " + cfg.text_model_type).c_str() : "");
  std::printf("plugin         %s\n", plugin.family.c_str());
  std::printf("layers         %lld (hidden %lld), %zu with routed experts\n", (long long)cfg.num_layers,
              (long long)cfg.hidden_size, inv.expert_layers.size());
  std::printf("experts        %lld per MoE layer, top-%lld, intermediate %lld, shared %lld\n",
              (long long)cfg.num_experts, (long long)cfg.num_experts_per_tok, (long long)cfg.moe_intermediate_size,
              (long long)cfg.num_shared_experts);
  std::printf("on-disk layout %s\n", map.expert_layout.c_str());
  std::printf("tensors        %zu in checkpoint, %zu claimed (%zu holding sites, %zu of them source scales; %zu aux), "
              "%zu unclaimed\n",
              ckpt->names().size(), inv.claimed, inv.site_tensors.size(), map.source_scales.size(), map.aux.size(),
              map.unclaimed.size());
  if (!cfg.source_quant.quant_method.empty()) {
    const auto& q = cfg.source_quant;
    std::printf("source quant   %s%s, %zu modules not converted (config.json quantization_config)\n",
                q.quant_method.c_str(),
                q.block_rows ? (" blocks [" + std::to_string(q.block_rows) + ", " + std::to_string(q.block_cols) + "]").c_str() : "",
                q.modules_to_not_convert.size());
  }
  std::string mtp_list;
  for (int64_t l : inv.mtp_layers) mtp_list += (mtp_list.empty() ? " (layer " : ", ") + std::to_string(l);
  if (!mtp_list.empty()) mtp_list += ")";
  std::printf("mtp / towers   %zu MTP layers%s, %zu MTP tensors; %zu tower tensors (copied unless a rule names "
              "the role)\n", inv.mtp_layers.size(), mtp_list.c_str(), inv.mtp_tensors, inv.tower_tensors);
  std::printf("sites          %zu linear weights\n\n", map.sites.size());
  std::printf("%-15s %7s %7s %14s %12s %6s  %s\n", "role", "sites", "aux", "params", "bytes", "share", "source");
  RoleStats total;
  for (const auto& [role, r] : inv.roles) {
    total.sites += r.sites; total.aux += r.aux; total.params += r.params; total.bytes += r.bytes;
  }
  for (const auto& [role, r] : inv.roles)
    std::printf("%-15s %7lld %7lld %14lld %12s %5.1f%%  %s\n", role_name(role), (long long)r.sites, (long long)r.aux,
                (long long)r.params, human_bytes(r.bytes).c_str(), 100.0 * r.bytes / std::max<uint64_t>(1, ckpt->total_bytes()),
                joined(r.sources).c_str());
  if (!map.unclaimed.empty())
    std::printf("%-15s %7s %7zu %14s %12s\n", "UNCLAIMED", "-", map.unclaimed.size(), "-", human_bytes(inv.unclaimed_bytes).c_str());
  std::printf("%-15s %7lld %7lld %14lld %12s\n", "total", (long long)total.sites, (long long)total.aux,
              (long long)total.params, human_bytes(total.bytes + inv.unclaimed_bytes).c_str());
  if (!summary) {
    std::printf("\n%-34s %-14s %-13s %-9s %s\n", "site", "role", "shape [out,in]", "source", "stored as");
    for (const auto& s : map.sites) {
      const std::string shape = "[" + std::to_string(s.view.rows) + ", " + std::to_string(s.view.cols) + "]";
      std::printf("%-34s %-14s %-13s %-9s %s\n", s.name.c_str(), role_name(s.role), shape.c_str(),
                  source_text(*ckpt, s).c_str(), view_text(s).c_str());
    }
  }
}

}  // namespace

int cmd_inspect(const std::vector<std::string>& argv) {
  std::string dir;
  bool json = false, summary = false, strict = false;
  Command c("inspect", "What moeq sees in a checkpoint: architecture, plugin, expert layout, sites, bytes per role",
            "MODEL_DIR [--json] [--summary] [--strict]", "moeq inspect demo/qwen3_moe_fused --summary");
  c.positional("MODEL_DIR", dir, "Hugging Face checkpoint directory (config.json + safetensors)");
  c.flag("--json", json, "print JSON instead of tables");
  c.flag("--summary", summary, "roles and totals only, no line per site");
  c.flag("--strict", strict, "fail (exit 1) when a tensor is unclaimed or an expert is missing");
  if (!c.parse(argv)) return 0;
  const Model model = open_model(dir);
  const SiteMap& map = model.sites;
  const ArchPlugin& plugin = *model.plugin;
  const auto missing = missing_experts(map, model.config);
  const Inventory inv = take_inventory(model);
  if (json)
    print_json(dir, model, inv, missing, summary);
  else
    print_tables(dir, model, inv, summary);

  for (const auto& n : map.unclaimed)
    std::fprintf(stderr, "warning: tensor '%s' is not claimed by plugin %s (it would be copied unchanged)\n", n.c_str(),
                 plugin.family.c_str());
  for (const auto& m : missing) std::fprintf(stderr, "warning: %s\n", m.c_str());
  if (strict && (!map.unclaimed.empty() || !missing.empty()))
    throw Error(dir + ": " + std::to_string(map.unclaimed.size()) + " unclaimed tensors, " +
                std::to_string(missing.size()) + " incomplete expert layers (--strict)");
  return 0;
}

}  // namespace moeq::cli
