// GLM-4.5/4.6 MoE: Llama-style attention (optional per-head QK norm, optional biases) with
// partial rotary (the first head_dim * partial_rotary_factor dims), the first
// first_k_dense_replace layers dense, then DeepSeek's sigmoid-routed MoE with shared experts
// (calib/forward/sigmoid_moe.h).
#include "calib/forward/pre_norm_decoder.h"
#include "calib/forward/rope_scaling.h"
#include "calib/forward/sigmoid_moe.h"
#include "core/error.h"

namespace moeq::fwd {
namespace {

double partial_rotary(const ModelConfig& c) {
  for (const auto* j : {&c.text, &c.raw})
    if (j->contains("rope_parameters") && (*j)["rope_parameters"].is_object() &&
        (*j)["rope_parameters"].contains("partial_rotary_factor"))
      return (*j)["rope_parameters"]["partial_rotary_factor"].get<double>();
  return config_double(c, "partial_rotary_factor", 0.5);  // transformers' Glm4MoeConfig default
}

class Glm4Moe : public LlamaMoeFamily {
 public:
  Glm4Moe(LlamaMoeSpec spec, SigmoidRouterSpec router, int64_t rotary_dim)
      : LlamaMoeFamily(std::move(spec)), router_(router) {
    spec_.attn.rotary_dim = rotary_dim;
  }
  void prepare(int64_t seq, const ForwardOptions& o) override {
    rope_ = make_rope(default_inv_freq(spec_.rope_theta, spec_.attn.rotary_dim), seq, o.device, o.dtype);
  }

 protected:
  at::Tensor feed_forward(const LayerRun& r, const at::Tensor& x) const override {
    return sigmoid_moe(r, x, router_, activation(spec_.act));
  }

 private:
  SigmoidRouterSpec router_;
};

std::unique_ptr<DecoderFamily> make_glm4_moe(const ModelConfig& c) {
  LlamaMoeSpec s = llama_moe_spec(c, "GLM-4-MoE");
  s.attn.qk_norm = config_bool(c, "use_qk_norm", false) ? QkNorm::PerHead : QkNorm::None;
  s.attn.window = 0;
  const int64_t rotary_dim = static_cast<int64_t>(c.head_dim * partial_rotary(c));
  if (rotary_dim <= 0 || rotary_dim % 2 != 0 || rotary_dim > c.head_dim)
    throw Error("config '" + c.path + "': partial_rotary_factor gives rotary dim " + std::to_string(rotary_dim) +
                " for head_dim " + std::to_string(c.head_dim) + " (need an even dim in 2.." + std::to_string(c.head_dim) + ")");
  return std::make_unique<Glm4Moe>(s, sigmoid_router_spec(c), rotary_dim);
}
}  // namespace
MOEQ_FORWARD("GLM-4-MoE", make_glm4_moe, "glm4_moe");
}  // namespace moeq::fwd
