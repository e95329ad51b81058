#pragma once
// Fusion groups: the linears a consumer fuses into one, with one per-tensor weight scale and
// one input scale (vLLM's packed_modules_mapping / stacked_params_mapping: qkv_proj,
// gate_up_proj and the experts' w13, fused_qkv_a_proj, in_proj_qkvz, in_proj_ba). Each
// architecture declares its groups by projection name (Site::proj) in its record
// (model/architecture.h). Projection names are family-specific where the fusion is (q_a/kv_a,
// in_proj_*), and a projection belongs to one group whichever family declares it
// (fusion_group checks), so a site's group follows from its name and projection alone.
#include <string>
#include <vector>

#include "model/site.h"

namespace moeq {

using FusionGroups = std::vector<std::vector<std::string>>;

// The group of a site: its name with the projection replaced by the members,
// `layers.3.attn.{q,k,v}`, `layers.3.experts.17.{gate,up}`; "" outside groups (and for
// sites whose name does not end in their projection). Throws moeq::Error when two
// registered architectures put one projection into different groups.
std::string fusion_group(const Site& s);

}  // namespace moeq
