#pragma once
// Rule builders shared by the families that follow the Llama/Qwen naming. Each plugin
// file composes these with its own rules; nothing here is registered by itself.
#include <string>
#include <vector>

#include "model/rules.h"

namespace moeq::plugins {

using Rules = std::vector<Rule>;

// `{prefix}embed_tokens.weight`, `{prefix}norm.weight`, `lm_head.weight`.
void embeddings_and_head(Rules& r, const std::string& prefix);
// q/k/v/o projections (+ biases, q_norm/k_norm) under `{layers}self_attn.`.
void llama_attention(Rules& r, const std::string& layers);
// Per-layer norms by name (aux tensors).
void layer_norms(Rules& r, const std::string& layers, const std::vector<std::string>& names);
// A gate/up/down MLP under `{layers}{module}.` as sites `{site}.{gate,up,down}`.
void gated_mlp(Rules& r, const std::string& layers, const std::string& module, Role role, const std::string& site);
// Routed experts under `{layers}{module}.`: per expert `{E}.{gate,up,down}_proj.weight`
// (or the names in `per_expert`), and the fused 3D `gate_up_proj` / `down_proj`.
void experts(Rules& r, const std::string& layers, const std::string& module,
             const std::string& gate = "gate_proj", const std::string& up = "up_proj",
             const std::string& down = "down_proj");

}  // namespace moeq::plugins
