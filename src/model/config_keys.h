#pragma once
// Typed config.json look-ups for the decoder specs (plugins/<family>.cpp) and the forward's
// RoPE scaling: text_config first, then top level; errors name the config file and key.
#include <string>

#include "core/error.h"
#include "model/config.h"

namespace moeq {

namespace config_keys_detail {
inline const nlohmann::json* find_key(const ModelConfig& c, const std::string& key) {
  if (c.text.contains(key) && !c.text[key].is_null()) return &c.text[key];
  if (c.raw.contains(key) && !c.raw[key].is_null()) return &c.raw[key];
  return nullptr;
}
[[noreturn]] inline void bad_type(const ModelConfig& c, const std::string& key, const char* want) {
  throw Error("config '" + c.path + "': key '" + key + "' is not " + want);
}
}  // namespace config_keys_detail

inline double config_double(const ModelConfig& c, const std::string& key, double fallback) {
  const nlohmann::json* j = config_keys_detail::find_key(c, key);
  if (!j) return fallback;
  if (!j->is_number()) config_keys_detail::bad_type(c, key, "a number");
  return j->get<double>();
}

inline bool config_bool(const ModelConfig& c, const std::string& key, bool fallback) {
  const nlohmann::json* j = config_keys_detail::find_key(c, key);
  if (!j) return fallback;
  if (!j->is_boolean()) config_keys_detail::bad_type(c, key, "a boolean");
  return j->get<bool>();
}

inline std::string config_string(const ModelConfig& c, const std::string& key, const std::string& fallback) {
  const nlohmann::json* j = config_keys_detail::find_key(c, key);
  if (!j) return fallback;
  if (!j->is_string()) config_keys_detail::bad_type(c, key, "a string");
  return j->get<std::string>();
}

// rope_theta: rope_parameters.rope_theta (transformers 5.x), else top-level rope_theta.
inline double rope_theta(const ModelConfig& c, double fallback) {
  const nlohmann::json* rp = config_keys_detail::find_key(c, "rope_parameters");
  if (rp && rp->is_object() && rp->contains("rope_theta")) return (*rp)["rope_theta"].get<double>();
  return config_double(c, "rope_theta", fallback);
}

// partial_rotary_factor inside rope_parameters (text_config, then top level), else the
// top-level key, else `fallback`.
inline double partial_rotary_factor(const ModelConfig& c, double fallback) {
  for (const auto* j : {&c.text, &c.raw})
    if (j->contains("rope_parameters") && (*j)["rope_parameters"].is_object() &&
        (*j)["rope_parameters"].contains("partial_rotary_factor"))
      return (*j)["rope_parameters"]["partial_rotary_factor"].get<double>();
  return config_double(c, "partial_rotary_factor", fallback);
}

// Throws naming the config and key when rope_parameters.rope_type is not "default" (moeq
// implements only plain RoPE for these families).
inline void require_default_rope(const ModelConfig& c, const std::string& family) {
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    const nlohmann::json* rp = config_keys_detail::find_key(c, key);
    if (!rp || !rp->is_object()) continue;
    for (const char* t : {"rope_type", "type"})
      if (rp->contains(t) && (*rp)[t].is_string() && (*rp)[t] != "default")
        throw Error("config '" + c.path + "': " + key + "." + t + " = '" + (*rp)[t].get<std::string>() +
                    "'; moeq's native " + family + " forward implements only the default RoPE");
  }
}

}  // namespace moeq
