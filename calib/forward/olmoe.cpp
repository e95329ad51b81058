// OLMoE: QK RMSNorm over the whole q / k projection, optional qkv clipping, softmax top-k
// router (renormalized when norm_topk_prob).
#include "calib/forward/pre_norm_decoder.h"

namespace moeq::fwd {
namespace {
std::unique_ptr<DecoderFamily> make_olmoe(const ModelConfig& c) {
  LlamaMoeSpec s = llama_moe_spec(c, "OLMoE");
  s.attn.qk_norm = QkNorm::Full;
  s.attn.clip_qkv = config_double(c, "clip_qkv", 0);
  s.renormalize = config_bool(c, "norm_topk_prob", false);
  s.round_weights_to_dtype = true;
  return std::make_unique<LlamaMoeFamily>(s);
}
}  // namespace
MOEQ_FORWARD("OLMoE", make_olmoe, "olmoe");
}  // namespace moeq::fwd
