// Mixtral: no QK norm, sliding window from the config (when set), softmax top-k router whose
// k weights are always renormalized (kept in float32).
#include "calib/forward/pre_norm_decoder.h"

namespace moeq::fwd {
namespace {
std::unique_ptr<DecoderFamily> make_mixtral(const ModelConfig& c) {
  LlamaMoeSpec s = llama_moe_spec(c, "Mixtral");
  s.renormalize = true;
  return std::make_unique<LlamaMoeFamily>(s);
}
}  // namespace
MOEQ_FORWARD("Mixtral", make_mixtral, "mixtral");
}  // namespace moeq::fwd
