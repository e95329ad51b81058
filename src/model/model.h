#pragma once
// An opened model: what every command reads first (quantize, compare, calibrate, inspect,
// verify --source, bench calibrate). One place for the sequence config.json -> plugin ->
// checkpoint -> site map, so a model is mapped once per run.
#include <memory>
#include <string>

#include "io/checkpoint.h"
#include "model/config.h"
#include "model/plugin.h"
#include "model/site.h"

namespace moeq {

struct Model {
  std::string dir;
  ModelConfig config;
  const ArchPlugin* plugin = nullptr;      // registered plugins live as long as the program
  std::shared_ptr<Checkpoint> checkpoint;  // shared: forwards and weight transforms keep it open
  SiteMap sites;                           // plans and forwards point into sites.sites: keep it in place
};

// Throws moeq::Error naming the file (config.json, a shard) or the tensor that fails, or
// listing the known model types when no plugin matches.
Model open_model(const std::string& dir);
// The same for a checkpoint already open, with its config (maps its sites).
Model model_of(std::shared_ptr<Checkpoint> checkpoint, const ModelConfig& config);

// The checks of a model that is to be quantized: routed experts the config declares were
// mapped (model/expert_check.h).
void require_routed_experts(const Model& model);

}  // namespace moeq
