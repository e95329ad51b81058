#include "export/fused_consumer_rules.h"

#include <map>

#include "core/error.h"
#include "export/layout.h"
#include "model/fusion.h"

namespace moeq {
namespace {

// What a consumer's fused linear must agree on; "" when the site is not quantized.
std::string scheme_of(const SitePlan& p) {
  if (!p.quantize) return "";
  return p.format + "|" + std::to_string(p.params.block_size) + p.params.granularity + (p.params.symmetric ? "s" : "a") +
         (p.params.double_quant ? "d" : "") + (p.input_quant ? "|in" : "|wo");
}

std::string describe(const SitePlan& p) {
  if (!p.quantize) return p.site->name + " is not quantized (" + p.reason + ")";
  return p.site->name + " is " + p.format + (p.input_quant ? " with activations" : " weight-only") + " (" + p.reason + ")";
}

// The first pair of sites in one bucket whose schemes differ, as "A, but B".
template <class Key>
std::map<Key, std::string> disagreements(const Plan& plan, Key (*key)(const Site&)) {
  std::map<Key, const SitePlan*> first;
  std::map<Key, std::string> out;
  for (const auto& sp : plan.sites) {
    const Key k = key(*sp.site);
    if (k == Key()) continue;
    auto [it, fresh] = first.emplace(k, &sp);
    if (!fresh && !out.count(k) && scheme_of(*it->second) != scheme_of(sp))
      out[k] = describe(*it->second) + ", but " + describe(sp);
  }
  return out;
}

std::string group_of(const Site& s) { return fusion_group(s); }
int64_t moe_layer_of(const Site& s) { return s.role == Role::Expert ? s.layer + 1 : 0; }  // 0: none

}  // namespace

void require_whole_fusion_groups(const Plan& plan, const std::string& export_name) {
  const auto bad = disagreements<std::string>(plan, group_of);
  if (bad.empty()) return;
  const auto& [group, what] = *bad.begin();
  throw Error("export " + export_name + ": fusion group " + group + " is split: " + what +
              "; vLLM loads the group as one linear with one weight scale and input scale, so quantize or exclude "
              "its members together (" + std::to_string(bad.size()) + " groups split)");
}

void require_whole_moe_layers(const Plan& plan, const std::string& export_name) {
  const auto bad = disagreements<int64_t>(plan, moe_layer_of);
  if (bad.empty()) return;
  const auto& [layer, what] = *bad.begin();
  throw Error("export " + export_name + ": layer " + std::to_string(layer - 1) + "'s routed experts are not quantized alike: " +
              what + "; vLLM builds one fused MoE per layer with one scheme for all its experts and projections, so "
              "quantize or exclude a layer's experts as a whole (" + std::to_string(bad.size()) + " layers mixed)");
}

void require_loadable_expert_storage(const Plan& plan, const std::string& family, const std::string& export_name) {
  if (family != "gpt-oss") return;
  for (const auto& sp : plan.sites)
    if (sp.quantize && sp.site->role == Role::Expert)
      throw Error("export " + export_name + ": " + sp.site->name + " (" + sp.reason + "): gpt-oss experts written per expert do not "
                  "load in vLLM (gpt_oss.py GptOssModel._load_weights_other reads only the fused interleaved gate_up_proj / "
                  "down_proj stacks, quantized only as its own mxfp4 checkpoints); exclude the experts (roles: [experts], "
                  "enable: false) or use export: bnb for transformers");
}

void check_fused_consumer_plan(const Plan& plan, const std::string& family, const std::string& export_name) {
  if (!export_layout(export_name).fused_consumers) return;
  require_whole_fusion_groups(plan, export_name);
  require_whole_moe_layers(plan, export_name);
  require_loadable_expert_storage(plan, family, export_name);
}

}  // namespace moeq
