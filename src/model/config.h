#pragma once
// config.json as a typed model description. Multimodal checkpoints (Gemma4, Qwen3.5)
// nest the language model's fields under `text_config`; those take precedence.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moeq {

// config.json `quantization_config` of a checkpoint published quantized (read, not written):
// FP8 block (`quant_method: fp8`, `weight_block_size: [128, 128]`, DeepSeek-V3 / Qwen3-FP8) or
// MXFP4 (`quant_method: mxfp4`, gpt-oss). `modules_to_not_convert` lists the modules stored in
// bf16 (fnmatch-style `*` in gpt-oss's).
struct SourceQuantConfig {
  std::string quant_method;                     // "" when the config has none
  std::string fmt;                              // "e4m3"
  std::string activation_scheme;                // "dynamic"
  int64_t block_rows = 0, block_cols = 0;       // weight_block_size
  std::vector<std::string> modules_to_not_convert;
};

struct ModelConfig {
  std::string path;                    // the config.json read
  std::string model_type;              // top-level model_type
  std::string text_model_type;         // text_config.model_type, or model_type
  std::vector<std::string> architectures;
  int64_t num_layers = 0;
  int64_t hidden_size = 0;
  int64_t vocab_size = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate_size = 0;       // dense MLP
  int64_t moe_intermediate_size = 0;   // per expert (0 when the model has no experts)
  int64_t num_experts = 0;             // routed experts per MoE layer
  int64_t num_experts_per_tok = 0;     // top-k
  int64_t num_shared_experts = 0;
  int64_t first_k_dense_replace = 0;   // leading dense layers (DeepSeek, GLM)
  bool tie_word_embeddings = false;
  // Multi-token-prediction layers after the trunk: num_nextn_predict_layers (DeepSeek-V3,
  // GLM-4.5) or mtp_num_hidden_layers (Qwen3-Next, Qwen3.5); 0 when the config says none.
  int64_t num_mtp_layers = 0;
  // The weights' dtype: `dtype` (transformers 5.x) or `torch_dtype` (4.x); "" when absent.
  std::string dtype;
  // RoPE parameters: `rope_parameters` (transformers 5.x) or `rope_scaling` (4.x) as stored
  // (null when neither), with its type (`rope_type` or legacy `type`; "default" when none),
  // theta (rope_parameters.rope_theta, else top-level rope_theta; 0 when absent) and
  // partial_rotary_factor (inside the RoPE object, else top level; 0 when absent).
  nlohmann::json rope;
  std::string rope_type = "default";
  double rope_theta = 0;
  double partial_rotary_factor = 0;
  // Attention kind per layer: `layer_types`, else derived from Qwen3-Next's
  // `full_attention_interval` as transformers 5.17 does (configuration_qwen3_next.py: layer i
  // is full_attention when (i + 1) % interval == 0, else linear_attention); empty when neither.
  std::vector<std::string> layer_types;
  SourceQuantConfig source_quant;      // quantization_config of a quantized source
  nlohmann::json raw;   // the whole file
  nlohmann::json text;  // text_config when present, else raw

  // An integer field looked up in text_config first, then at top level.
  int64_t get_int(const std::string& key, int64_t fallback) const;
  bool has(const std::string& key) const;
};

// Reads MODEL_DIR/config.json. Throws moeq::Error naming the file and key when a required
// field is missing or has the wrong type.
ModelConfig load_config(const std::string& model_dir);
ModelConfig parse_config(const nlohmann::json& j, const std::string& path);

}  // namespace moeq
