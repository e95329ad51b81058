// The model a calibration file was made for: a hash of the architecture and of every
// tensor's name, shape and dtype (not the values: hashing hundreds of GB would cost more
// than calibrating, and a fine-tune of the same architecture is refused by neither).
#include <cstdio>

#include "calib/calib_file.h"
#include "core/error.h"
#include "io/dtype.h"

namespace moeq {
namespace {

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string architecture_text(const ModelConfig& c) {
  std::string a;
  for (const auto& x : c.architectures) a += x + ",";
  auto f = [](const char* k, int64_t v) { return std::string(k) + "=" + std::to_string(v) + ";"; };
  return "model_type=" + c.model_type + ";text_model_type=" + c.text_model_type + ";architectures=" + a + ";" +
         f("layers", c.num_layers) + f("hidden", c.hidden_size) + f("vocab", c.vocab_size) + f("heads", c.num_heads) +
         f("kv_heads", c.num_kv_heads) + f("head_dim", c.head_dim) + f("intermediate", c.intermediate_size) +
         f("moe_intermediate", c.moe_intermediate_size) + f("experts", c.num_experts) + f("top_k", c.num_experts_per_tok) +
         f("shared_experts", c.num_shared_experts) + f("first_k_dense", c.first_k_dense_replace) +
         f("tie_embeddings", c.tie_word_embeddings) + "\n";
}

}  // namespace

std::string model_fingerprint(const ModelConfig& cfg, const Checkpoint& ck) {
  std::string text = architecture_text(cfg);
  for (const auto& n : ck.names()) {  // sorted
    const TensorInfo& t = ck.info(n);
    text += n + "|" + dtype_name(t.dtype) + "|";
    for (int64_t d : t.shape) text += std::to_string(d) + ",";
    text += "\n";
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(fnv1a(text)));
  return buf;
}

std::string model_summary(const ModelConfig& cfg, const Checkpoint& ck) {
  return cfg.text_model_type + ", " + std::to_string(cfg.num_layers) + " layers, " + std::to_string(cfg.num_experts) +
         " experts (top-" + std::to_string(cfg.num_experts_per_tok) + "), hidden " + std::to_string(cfg.hidden_size) + ", " +
         std::to_string(ck.names().size()) + " tensors";
}

void require_calib_matches(const CalibData& d, const std::string& calib_path, const ModelConfig& cfg, const Checkpoint& ck,
                           const std::string& model_dir) {
  const std::string fp = model_fingerprint(cfg, ck);
  if (fp == d.model_fingerprint) return;
  throw Error(calib_path + " was made for another model: " + d.model_dir + " (" + d.model_summary + ", fingerprint " +
              d.model_fingerprint + "), not " + model_dir + " (" + model_summary(cfg, ck) + ", fingerprint " + fp +
              "); run moeq calibrate on " + model_dir);
}

}  // namespace moeq
