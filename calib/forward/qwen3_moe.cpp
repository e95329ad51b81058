// Qwen3-MoE: per-head QK RMSNorm, softmax top-k router (renormalized when norm_topk_prob),
// dense MLP on mlp_only_layers (the plugin maps them to `mlp.*`, the layer has no router).
#include "calib/forward/pre_norm_decoder.h"

namespace moeq::fwd {
namespace {
std::unique_ptr<DecoderFamily> make_qwen3_moe(const ModelConfig& c) {
  LlamaMoeSpec s = llama_moe_spec(c, "Qwen3-MoE");
  s.attn.qk_norm = QkNorm::PerHead;
  if (!config_bool(c, "use_sliding_window", false)) s.attn.window = 0;
  s.renormalize = config_bool(c, "norm_topk_prob", false);
  s.round_weights_to_dtype = true;
  return std::make_unique<LlamaMoeFamily>(s);
}
}  // namespace
MOEQ_FORWARD("Qwen3-MoE", make_qwen3_moe, "qwen3_moe");
}  // namespace moeq::fwd
