#pragma once
// Architecture plugins: one per model family, found by config.json's model_type.
// A plugin is a list of rules (model/rules.h); map_sites applies them to a checkpoint.
#include <functional>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/config.h"
#include "model/rules.h"
#include "model/site.h"

namespace moeq {

struct ArchPlugin {
  std::string family;                       // "Qwen3-MoE"
  std::vector<std::string> model_types;     // config.json model_type values it handles
  std::function<std::vector<Rule>(const ModelConfig&)> rules;
};

bool register_plugin(ArchPlugin plugin);
const std::vector<ArchPlugin>& all_plugins();
// The plugin for config.model_type (or text_config's model_type). Throws moeq::Error that
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

#define MOEQ_CONCAT_INNER(a, b) a##b
#define MOEQ_CONCAT(a, b) MOEQ_CONCAT_INNER(a, b)
// Registers a plugin from its own file: MOEQ_PLUGIN("Qwen3-MoE", rules_fn, "qwen3_moe", ...);
#define MOEQ_PLUGIN(family, fn, ...)                                  \
  static const bool MOEQ_CONCAT(moeq_plugin_registered_, __LINE__) = \
      ::moeq::register_plugin(::moeq::ArchPlugin{family, {__VA_ARGS__}, fn})
