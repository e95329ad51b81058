#include "calib/forward/decoder.h"

#include "core/error.h"

namespace moeq::fwd {

at::Tensor DecoderFamily::embed(const LayerWeights& globals, const at::Tensor& ids) const {
  return at::embedding(globals.w("embed_tokens"), ids);
}

at::Tensor standard_head(const LayerRun& run, const at::Tensor& h, double eps, RmsStyle style, double softcap) {
  at::Tensor x = rms_norm(h, run.w.a("norm.weight"), eps, style);
  const bool own_head = run.w.has("lm_head");
  if (own_head) run.observe({"lm_head"}, x);
  if (!run.want_logits) return at::Tensor();
  at::Tensor logits = at::linear(own_head ? run.input("lm_head", x) : x, run.w.w(own_head ? "lm_head" : "embed_tokens")).to(at::kFloat);
  if (softcap > 0) logits = at::tanh(logits / softcap) * softcap;
  return logits;
}

namespace {
const nlohmann::json* find_key(const ModelConfig& c, const std::string& key) {
  if (c.text.contains(key) && !c.text[key].is_null()) return &c.text[key];
  if (c.raw.contains(key) && !c.raw[key].is_null()) return &c.raw[key];
  return nullptr;
}
[[noreturn]] void bad_type(const ModelConfig& c, const std::string& key, const char* want) {
  throw Error("config '" + c.path + "': key '" + key + "' is not " + want);
}
}  // namespace

double config_double(const ModelConfig& c, const std::string& key, double fallback) {
  const nlohmann::json* j = find_key(c, key);
  if (!j) return fallback;
  if (!j->is_number()) bad_type(c, key, "a number");
  return j->get<double>();
}
bool config_bool(const ModelConfig& c, const std::string& key, bool fallback) {
  const nlohmann::json* j = find_key(c, key);
  if (!j) return fallback;
  if (!j->is_boolean()) bad_type(c, key, "a boolean");
  return j->get<bool>();
}
std::string config_string(const ModelConfig& c, const std::string& key, const std::string& fallback) {
  const nlohmann::json* j = find_key(c, key);
  if (!j) return fallback;
  if (!j->is_string()) bad_type(c, key, "a string");
  return j->get<std::string>();
}

double rope_theta(const ModelConfig& c, double fallback) {
  const nlohmann::json* rp = find_key(c, "rope_parameters");
  if (rp && rp->is_object() && rp->contains("rope_theta")) return (*rp)["rope_theta"].get<double>();
  return config_double(c, "rope_theta", fallback);
}

void require_default_rope(const ModelConfig& c, const std::string& family) {
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    const nlohmann::json* rp = find_key(c, key);
    if (!rp || !rp->is_object()) continue;
    for (const char* t : {"rope_type", "type"})
      if (rp->contains(t) && (*rp)[t].is_string() && (*rp)[t] != "default")
        throw Error("config '" + c.path + "': " + key + "." + t + " = '" + (*rp)[t].get<std::string>() +
                    "'; moeq's native " + family + " forward implements only the default RoPE");
  }
}

}  // namespace moeq::fwd
