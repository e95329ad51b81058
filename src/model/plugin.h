#pragma once
// Site mapping with an architecture's rules (model/architecture.h: one record per family,
// found by config.json's model_type); map_sites applies them to a checkpoint.
#include <functional>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/architecture.h"
#include "model/config.h"
#include "model/rules.h"
#include "model/site.h"

namespace moeq {

// The name the site-mapping callers know the architecture record by.
using ArchPlugin = Architecture;

// The architecture for config.model_type (or text_config's model_type). Throws moeq::Error that
// lists the known model types when none matches.
const ArchPlugin& plugin_for(const ModelConfig& config);

// Applies the plugin's rules to every tensor of the checkpoint. Checks shapes against the
// layout (throws naming the tensor), and lists tensors that no rule claims.
SiteMap map_sites(const ArchPlugin& plugin, const ModelConfig& config, const Checkpoint& ckpt);
// The same over a chosen subset of tensors (verify maps an export's `*.weight` tensors).
SiteMap map_sites(const ArchPlugin& plugin, const ModelConfig& config, const std::vector<const TensorInfo*>& tensors,
                  const std::string& where);

// Expert sites per layer that the checkpoint lacks (config says num_experts); one line
// per layer with gaps. Empty when complete.
std::vector<std::string> missing_experts(const SiteMap& map, const ModelConfig& config);

}  // namespace moeq
