#pragma once
// A config that declares routed experts while the plugin mapped no expert weight (a layout
// it does not know, as a gpt-oss checkpoint once was) is an error, never an export without
// experts (`experts quantized: 0 / 0`).
#include <string>

#include "io/checkpoint.h"
#include "model/config.h"
#include "model/site.h"

namespace moeq {

// Throws moeq::Error naming the model dir, the plugin and the first unclaimed tensor.
void require_routed_experts(const SiteMap& map, const ModelConfig& config, const std::string& model_dir,
                            const std::string& family, const Checkpoint& ckpt);

}  // namespace moeq
