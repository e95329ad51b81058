#pragma once
// An architecture: one record per model family, registered once from its own file
// (plugins/<family>.cpp) through core/registry.h:
//   MOEQ_REGISTER(Architecture, "Qwen3-MoE", Architecture{"Qwen3-MoE", {"qwen3_moe"}, rules, groups, decoder});
// It says which config.json model_types it handles, how tensors map to sites (rules), which
// linears a consumer fuses (fusion groups) and what the decoder computes (a DecoderSpec the
// native forward in calib/forward assembles).
#include <functional>
#include <string>
#include <vector>

#include "core/registry.h"
#include "model/config.h"
#include "model/decoder_spec.h"
#include "model/fusion.h"
#include "model/rules.h"

namespace moeq {

struct Architecture {
  std::string family;                    // "Qwen3-MoE": the registry name
  std::vector<std::string> model_types;  // config.json model_type values it handles
  std::function<std::vector<Rule>(const ModelConfig&)> rules;
  // vLLM's packed_modules_mapping by projection name (model/fusion.h).
  FusionGroups fusion_groups;
  // The decoder of the native forward; empty when moeq has none for the family.
  std::function<DecoderSpec(const ModelConfig&)> decoder;
};

using Architectures = Registry<Architecture>;

}  // namespace moeq
