// Placeholder until the native forward lands.
#include "calib/forward.h"

#include "core/error.h"

namespace moeq {
std::unique_ptr<MoeForward> make_forward(std::shared_ptr<Checkpoint>, const ModelConfig& config, const ForwardOptions&) {
  throw Error("no native forward for model_type '" + config.text_model_type + "' yet");
}
}  // namespace moeq
