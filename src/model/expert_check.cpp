#include "model/expert_check.h"

#include "core/error.h"

namespace moeq {

void require_routed_experts(const SiteMap& map, const ModelConfig& config, const std::string& model_dir,
                            const std::string& family, const Checkpoint& ckpt) {
  if (config.num_experts <= 0) return;
  for (const auto& s : map.sites)
    if (s.role == Role::Expert) return;
  throw Error(model_dir + ": config.json declares " + std::to_string(config.num_experts) +
              " routed experts per MoE layer, but plugin " + family + " found no expert weight among the " +
              std::to_string(ckpt.names().size()) + " tensors (" + std::to_string(map.unclaimed.size()) + " unclaimed" +
              (map.unclaimed.empty() ? "" : ", first: " + map.unclaimed[0]) +
              "): the checkpoint's expert layout is not one the plugin knows; run moeq inspect " + model_dir);
}

}  // namespace moeq
