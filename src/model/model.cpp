#include "model/model.h"

#include "model/expert_check.h"

namespace moeq {

Model open_model(const std::string& dir) {
  ModelConfig config = load_config(dir);
  plugin_for(config);  // an unknown model_type fails before the shards are opened
  Model m = model_of(Checkpoint::open(dir), config);
  m.dir = dir;  // as the user spelled it: messages name it so
  return m;
}

Model model_of(std::shared_ptr<Checkpoint> checkpoint, const ModelConfig& config) {
  Model m;
  m.dir = checkpoint ? checkpoint->dir() : std::string();
  m.config = config;
  m.plugin = &plugin_for(m.config);
  m.checkpoint = std::move(checkpoint);
  if (m.checkpoint) m.sites = map_sites(*m.plugin, m.config, *m.checkpoint);
  return m;
}

void require_routed_experts(const Model& model) {
  require_routed_experts(model.sites, model.config, model.dir, model.plugin->family, *model.checkpoint);
}

}  // namespace moeq
