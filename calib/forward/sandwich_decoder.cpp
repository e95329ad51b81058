// Gemma4 (text part; 26B-A4B layout). Differences from the Llama-style decoder:
// - embeddings scaled by sqrt(hidden) (cast to the compute dtype first), Gemma-style RMSNorm
//   (weight applied in float32), attention scale 1.0 with per-head q/k norms and a scale-free
//   v norm, and a soft-capped head when final_logit_softcapping is set;
// - layer types: sliding layers (window, head_dim, default RoPE) and full layers
//   (global head_dim, "proportional" partial RoPE, optional k-as-v attention);
// - every layer has a dense MLP *and* routed experts, each with its own pre/post norms:
//     h += post_attention_norm(attn(input_norm(h)))
//     m  = post_ff_norm_1(mlp(pre_ff_norm(h))) + post_ff_norm_2(experts(pre_ff_norm_2(h)))
//     h  = (h + post_ff_norm(m)) * layer_scalar
//   The router sees a scale-free norm of h times router.scale / sqrt(hidden); its top-k
//   weights are renormalized and multiplied by router.per_expert_scale.
#include <cmath>

#include "calib/forward/attention.h"
#include "calib/forward/decoder.h"
#include "core/error.h"

namespace moeq::fwd {
namespace {
constexpr RmsStyle kStyle = RmsStyle::ScaleThenCast;

struct LayerType {
  AttnSpec attn;
  at::Tensor inv_freq;
  Rope rope;
};

class Gemma4 : public DecoderFamily {
 public:
  explicit Gemma4(const ModelConfig& c) : c_(c) {
    for (const char* unsupported : {"num_kv_shared_layers", "hidden_size_per_layer_input"})
      if (c.get_int(unsupported, 0) != 0)
        throw Error("config '" + c.path + "': " + unsupported +
                    " != 0 (small Gemma4 models with shared KV / per-layer inputs); moeq's native Gemma4 forward "
                    "covers the MoE layout (26B-A4B), where both are 0");
    if (config_string(c, "use_bidirectional_attention", "") == "all")
      throw Error("config '" + c.path + "': use_bidirectional_attention = 'all' is not supported by the native forward");
    eps_ = config_double(c, "rms_norm_eps", 1e-6);
    act_ = config_string(c, "hidden_activation", "gelu_pytorch_tanh");
    softcap_ = config_double(c, "final_logit_softcapping", 0);
    top_k_ = c.num_experts_per_tok;
    if (!c.text.contains("layer_types") || !c.text["layer_types"].is_array())
      throw Error("config '" + c.path + "': layer_types (sliding_attention / full_attention per layer) is missing");
    for (const auto& t : c.text["layer_types"]) layer_types_.push_back(t.get<std::string>());
    if (static_cast<int64_t>(layer_types_.size()) != c.num_layers)
      throw Error("config '" + c.path + "': layer_types has " + std::to_string(layer_types_.size()) + " entries for " +
                  std::to_string(c.num_layers) + " layers");
    const bool k_eq_v = config_bool(c, "attention_k_eq_v", false);
    for (const std::string name : {"sliding_attention", "full_attention"}) {
      LayerType lt;
      const bool sliding = name == "sliding_attention";
      lt.attn.heads = c.num_heads;
      lt.attn.kv_heads = c.num_kv_heads;
      lt.attn.head_dim = c.head_dim;
      if (!sliding) full_layer_overrides(k_eq_v, lt.attn);
      lt.attn.scale = 1.0;
      lt.attn.window = sliding ? c.get_int("sliding_window", 0) : 0;
      lt.attn.qk_norm = QkNorm::PerHead;
      lt.attn.v_norm = true;
      lt.attn.k_eq_v = k_eq_v && !sliding;
      lt.attn.eps = eps_;
      lt.attn.style = kStyle;
      lt.inv_freq = inv_freq(name, lt.attn.head_dim);
      types_[name] = lt;
    }
  }

  void prepare(int64_t seq, const ForwardOptions& o) override {
    for (auto& [name, lt] : types_) lt.rope = make_rope(lt.inv_freq, seq, o.device, o.dtype);
  }

  at::Tensor embed(const LayerWeights& g, const at::Tensor& ids) const override {
    const at::Tensor& w = g.w("embed_tokens");
    at::Tensor scale = at::scalar_tensor(std::sqrt(static_cast<double>(w.size(1))), at::kFloat).to(w.scalar_type());
    return at::embedding(w, ids) * scale.to(w.device());
  }

  at::Tensor layer(const LayerRun& r, const at::Tensor& h_in) const override {
    const LayerType& lt = types_.at(layer_types_.at(r.layer()));
    auto norm = [&](const at::Tensor& x, const std::string& n) { return rms_norm(x, r.w.a(n + ".weight"), eps_, kStyle); };
    const Activation act = activation(act_);
    at::Tensor a = self_attention(r, norm(h_in, "input_layernorm"), lt.attn, lt.rope);
    at::Tensor h = h_in + norm(a, "post_attention_layernorm");
    at::Tensor m = gated_mlp(r, "mlp", norm(h, "pre_feedforward_layernorm"), act);
    if (r.w.has("router")) {
      const int64_t H = h.size(-1);
      at::Tensor flat = h.reshape({-1, H});
      at::Tensor rx = rms_norm(flat, at::Tensor(), eps_, kStyle) * r.w.a("router.scale") * std::pow(H, -0.5);
      r.observe({"router"}, rx);
      Routing routing = softmax_topk(r.linear("router", rx), top_k_, /*renormalize=*/true);
      routing.weights = routing.weights * r.w.a("router.per_expert_scale").index_select(0, routing.ids.reshape(-1)).view_as(routing.ids);
      at::Tensor e = routed_experts(r, norm(flat, "pre_feedforward_layernorm_2"), routing, act);
      m = norm(m, "post_feedforward_layernorm_1") + norm(e.view(h.sizes()), "post_feedforward_layernorm_2");
    }
    h = h + norm(m, "post_feedforward_layernorm");
    at::Tensor scalar = r.w.a_opt("layer_scalar");
    return scalar.defined() ? h * scalar : h;
  }

  at::Tensor head(const LayerRun& r, const at::Tensor& h) const override {
    return standard_head(r, h, eps_, kStyle, softcap_);
  }

 private:
  // Full-attention layers: per_layer_config[L] (when the config has it) or global_head_dim /
  // num_global_key_value_heads, as transformers' Gemma4TextConfig resolves them.
  void full_layer_overrides(bool k_eq_v, AttnSpec& a) const {
    const nlohmann::json& t = c_.text;
    if (t.contains("per_layer_config") && t["per_layer_config"].is_object()) {
      for (const auto& [layer, o] : t["per_layer_config"].items()) {
        if (o.contains("head_dim")) a.head_dim = o["head_dim"].get<int64_t>();
        if (o.contains("num_key_value_heads")) a.kv_heads = o["num_key_value_heads"].get<int64_t>();
      }
      return;
    }
    a.head_dim = c_.get_int("global_head_dim", 512);
    if (k_eq_v && c_.has("num_global_key_value_heads")) a.kv_heads = c_.get_int("num_global_key_value_heads", a.kv_heads);
  }

  at::Tensor inv_freq(const std::string& type, int64_t head_dim) const {
    const nlohmann::json& rp = c_.text.contains("rope_parameters") ? c_.text["rope_parameters"] : nlohmann::json();
    if (!rp.is_object() || !rp.contains(type) || !rp[type].is_object())
      throw Error("config '" + c_.path + "': rope_parameters." + type + " is missing");
    const auto& p = rp[type];
    const std::string kind = p.value("rope_type", std::string("default"));
    const double theta = p.value("rope_theta", 10000.0);
    if (kind == "default") return default_inv_freq(theta, head_dim);
    if (kind == "proportional")
      return proportional_inv_freq(theta, head_dim, p.value("partial_rotary_factor", 1.0), p.value("factor", 1.0));
    throw Error("config '" + c_.path + "': rope_parameters." + type + ".rope_type '" + kind +
                "' is not supported by the native Gemma4 forward (default, proportional)");
  }

  ModelConfig c_;
  double eps_ = 1e-6, softcap_ = 0;
  std::string act_;
  int64_t top_k_ = 0;
  std::vector<std::string> layer_types_;
  std::map<std::string, LayerType> types_;
};

std::unique_ptr<DecoderFamily> make_gemma4(const ModelConfig& c) { return std::make_unique<Gemma4>(c); }
}  // namespace
MOEQ_FORWARD("Gemma4", make_gemma4, "gemma4", "gemma4_text");
}  // namespace moeq::fwd
