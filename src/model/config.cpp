#include "model/config.h"

#include <fstream>

#include "core/error.h"

namespace moeq {
namespace {

const nlohmann::json* lookup(const ModelConfig& c, const std::string& key) {
  for (const nlohmann::json* j : {&c.text, &c.raw}) {
    auto it = j->find(key);
    if (it != j->end() && !it->is_null()) return &*it;
  }
  return nullptr;
}

int64_t first_int(const ModelConfig& c, std::initializer_list<const char*> keys, int64_t fallback) {
  for (const char* k : keys) {
    const nlohmann::json* v = lookup(c, k);
    if (!v) continue;
    if (!v->is_number_integer())
      throw Error(c.path + ": key '" + k + "' should be an integer, got " + v->dump());
    return v->get<int64_t>();
  }
  return fallback;
}

double number(const ModelConfig& c, const std::string& key, const nlohmann::json& v) {
  if (!v.is_number()) throw Error(c.path + ": key '" + key + "' should be a number, got " + v.dump());
  return v.get<double>();
}

void parse_rope(ModelConfig& c) {
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    const nlohmann::json* v = lookup(c, key);
    if (!v) continue;
    if (!v->is_object()) throw Error(c.path + ": key '" + key + "' should be an object, got " + v->dump());
    c.rope = *v;
    for (const char* t : {"rope_type", "type"})
      if (auto it = v->find(t); it != v->end() && !it->is_null()) {
        if (!it->is_string()) throw Error(c.path + ": key '" + key + "." + t + "' should be a string, got " + it->dump());
        c.rope_type = it->get<std::string>();
        break;
      }
    break;
  }
  const nlohmann::json& rp = c.rope;
  if (rp.is_object() && rp.contains("rope_theta")) c.rope_theta = number(c, "rope_parameters.rope_theta", rp["rope_theta"]);
  else if (const nlohmann::json* v = lookup(c, "rope_theta")) c.rope_theta = number(c, "rope_theta", *v);
  if (rp.is_object() && rp.contains("partial_rotary_factor"))
    c.partial_rotary_factor = number(c, "partial_rotary_factor", rp["partial_rotary_factor"]);
  else if (const nlohmann::json* v = lookup(c, "partial_rotary_factor"))
    c.partial_rotary_factor = number(c, "partial_rotary_factor", *v);
}

void parse_layer_types(ModelConfig& c) {
  if (const nlohmann::json* v = lookup(c, "layer_types")) {
    if (!v->is_array()) throw Error(c.path + ": key 'layer_types' should be a list of strings, got " + v->dump());
    for (const auto& t : *v) {
      if (!t.is_string()) throw Error(c.path + ": key 'layer_types' has a non-string entry " + t.dump());
      c.layer_types.push_back(t.get<std::string>());
    }
    return;
  }
  const int64_t interval = first_int(c, {"full_attention_interval"}, 0);
  if (!c.has("full_attention_interval")) return;
  if (interval <= 0) throw Error(c.path + ": key 'full_attention_interval' should be positive, got " + std::to_string(interval));
  for (int64_t i = 0; i < c.num_layers; ++i)
    c.layer_types.push_back((i + 1) % interval ? "linear_attention" : "full_attention");
}

SourceQuantConfig parse_source_quant(const nlohmann::json& j, const std::string& path) {
  SourceQuantConfig q;
  auto qc = j.find("quantization_config");
  if (qc == j.end() || qc->is_null()) return q;
  const std::string where = path + ": quantization_config";
  if (!qc->is_object()) throw Error(where + " should be an object, got " + qc->dump());
  auto str = [&](const char* k) {
    auto it = qc->find(k);
    if (it == qc->end() || it->is_null()) return std::string();
    if (!it->is_string()) throw Error(where + "." + k + " should be a string, got " + it->dump());
    return it->get<std::string>();
  };
  q.quant_method = str("quant_method");
  if (q.quant_method != "fp8" && q.quant_method != "mxfp4") return q;  // an export's own (modelopt, ...); format-name-ok: HF quant_method
  q.fmt = str("fmt");
  q.activation_scheme = str("activation_scheme");
  if (auto b = qc->find("weight_block_size"); b != qc->end() && !b->is_null()) {
    if (!b->is_array() || b->size() != 2 || !(*b)[0].is_number_integer() || !(*b)[1].is_number_integer() ||
        (*b)[0].get<int64_t>() <= 0 || (*b)[1].get<int64_t>() <= 0)
      throw Error(where + ".weight_block_size should be two positive integers, got " + b->dump());
    q.block_rows = (*b)[0].get<int64_t>();
    q.block_cols = (*b)[1].get<int64_t>();
  }
  for (const char* key : {"modules_to_not_convert", "ignored_layers"})
    if (auto m = qc->find(key); m != qc->end() && !m->is_null()) {
      if (!m->is_array()) throw Error(where + "." + key + " should be a list of module names, got " + m->dump());
      for (const auto& v : *m) {
        if (!v.is_string()) throw Error(where + "." + key + " should hold strings, got " + v.dump());
        q.modules_to_not_convert.push_back(v.get<std::string>());
      }
    }
  return q;
}

}  // namespace

int64_t ModelConfig::get_int(const std::string& key, int64_t fallback) const {
  const nlohmann::json* v = lookup(*this, key);
  if (!v) return fallback;
  if (!v->is_number_integer()) throw Error(path + ": key '" + key + "' should be an integer, got " + v->dump());
  return v->get<int64_t>();
}

bool ModelConfig::has(const std::string& key) const { return lookup(*this, key) != nullptr; }

ModelConfig parse_config(const nlohmann::json& j, const std::string& path) {
  ModelConfig c;
  c.path = path;
  if (!j.is_object()) throw Error(path + ": not a JSON object");
  c.raw = j;
  auto tc = j.find("text_config");
  c.text = (tc != j.end() && tc->is_object()) ? *tc : j;
  auto mt = j.find("model_type");
  if (mt == j.end() || !mt->is_string()) throw Error(path + ": missing string key 'model_type'");
  c.model_type = mt->get<std::string>();
  auto tmt = c.text.find("model_type");
  c.text_model_type = (tmt != c.text.end() && tmt->is_string()) ? tmt->get<std::string>() : c.model_type;
  if (auto a = j.find("architectures"); a != j.end() && a->is_array())
    for (const auto& s : *a)
      if (s.is_string()) c.architectures.push_back(s.get<std::string>());
  c.num_layers = first_int(c, {"num_hidden_layers", "n_layer", "num_layers"}, 0);
  if (c.num_layers <= 0) throw Error(path + ": missing or non-positive 'num_hidden_layers'");
  c.hidden_size = first_int(c, {"hidden_size", "d_model", "n_embd"}, 0);
  if (c.hidden_size <= 0) throw Error(path + ": missing or non-positive 'hidden_size'");
  c.vocab_size = first_int(c, {"vocab_size"}, 0);
  c.num_heads = first_int(c, {"num_attention_heads", "n_head"}, 0);
  c.num_kv_heads = first_int(c, {"num_key_value_heads"}, c.num_heads);
  c.head_dim = first_int(c, {"head_dim"}, c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
  c.intermediate_size = first_int(c, {"intermediate_size", "ffn_dim"}, 0);
  c.num_experts = first_int(c, {"num_experts", "num_local_experts", "n_routed_experts"}, 0);
  c.moe_intermediate_size =
      first_int(c, {"moe_intermediate_size", "expert_intermediate_size"}, c.num_experts > 0 ? c.intermediate_size : 0);
  c.num_experts_per_tok = first_int(c, {"num_experts_per_tok", "top_k_experts", "experts_per_token"}, 0);
  c.num_shared_experts = first_int(c, {"n_shared_experts", "num_shared_experts"}, 0);
  c.first_k_dense_replace = first_int(c, {"first_k_dense_replace"}, 0);
  c.num_mtp_layers = first_int(c, {"num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_layers"}, 0);
  for (const char* key : {"dtype", "torch_dtype"})
    if (const nlohmann::json* v = lookup(c, key)) {
      if (!v->is_string()) throw Error(path + ": key '" + key + "' should be a string, got " + v->dump());
      c.dtype = v->get<std::string>();
      break;
    }
  parse_rope(c);
  parse_layer_types(c);
  for (const nlohmann::json* src : {&c.text, &c.raw}) {
    auto t = src->find("tie_word_embeddings");
    if (t != src->end() && t->is_boolean()) { c.tie_word_embeddings = t->get<bool>(); break; }
  }
  c.source_quant = parse_source_quant(j, path);
  return c;
}

ModelConfig load_config(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open (is this a Hugging Face model directory?)");
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) throw Error(path + ": not valid JSON");
  return parse_config(j, path);
}

}  // namespace moeq
