#pragma once
// Fusion groups: the linears a consumer fuses into one, with one per-tensor weight scale and
// one input scale (vLLM's packed_modules_mapping / stacked_params_mapping: qkv_proj,
// gate_up_proj and the experts' w13, fused_qkv_a_proj, in_proj_qkvz, in_proj_ba). Each plugin
// declares its groups by projection name (Site::proj) with MOEQ_FUSION_GROUPS in its own file.
// Projection names are family-specific where the fusion is (q_a/kv_a, in_proj_*), and a
// projection belongs to one group whichever family declares it (registration checks), so a
// site's group follows from its name and projection alone.
#include <string>
#include <vector>

#include "model/site.h"

namespace moeq {

using FusionGroups = std::vector<std::vector<std::string>>;

// Throws moeq::Error when a projection is already in another group.
bool register_fusion_groups(const std::string& family, const FusionGroups& groups);
// The groups a family declared (empty when none).
FusionGroups fusion_groups_of(const std::string& family);

// The group of a site: its name with the projection replaced by the members,
// `layers.3.attn.{q,k,v}`, `layers.3.experts.17.{gate,up}`; "" outside groups (and for
// sites whose name does not end in their projection).
std::string fusion_group(const Site& s);

}  // namespace moeq

#define MOEQ_FUSION_CAT_INNER(a, b) a##b
#define MOEQ_FUSION_CAT(a, b) MOEQ_FUSION_CAT_INNER(a, b)
// In a plugin's file: MOEQ_FUSION_GROUPS("DeepSeek-V3", {{"q_a", "kv_a"}, {"gate", "up"}});
#define MOEQ_FUSION_GROUPS(family, ...)                                       \
  static const bool MOEQ_FUSION_CAT(moeq_fusion_registered_, __LINE__) = \
      ::moeq::register_fusion_groups(family, ::moeq::FusionGroups __VA_ARGS__)
