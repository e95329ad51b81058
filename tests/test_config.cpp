// config.json -> ModelConfig, including nested text configs.
#include "model/config.h"
#include "test_util.h"

using namespace moeq;

TEST_CASE("config: flat Qwen3-MoE fields") {
  auto c = parse_config(nlohmann::json::parse(R"({"model_type":"qwen3_moe","num_hidden_layers":48,"hidden_size":2048,
    "num_experts":128,"num_experts_per_tok":8,"moe_intermediate_size":768,"intermediate_size":6144,
    "num_attention_heads":32,"num_key_value_heads":4,"head_dim":128,"vocab_size":151936})"), "config.json");
  CHECK(c.model_type == "qwen3_moe");
  CHECK(c.text_model_type == "qwen3_moe");
  CHECK(c.num_layers == 48);
  CHECK(c.num_experts == 128);
  CHECK(c.num_experts_per_tok == 8);
  CHECK(c.moe_intermediate_size == 768);
  CHECK(c.num_kv_heads == 4);
}

TEST_CASE("config: Gemma4 multimodal nests the text model under text_config") {
  auto c = parse_config(nlohmann::json::parse(R"({"model_type":"gemma4","architectures":["Gemma4ForConditionalGeneration"],
    "text_config":{"model_type":"gemma4_text","num_hidden_layers":30,"hidden_size":2816,"num_experts":128,
    "top_k_experts":8,"moe_intermediate_size":704,"intermediate_size":2112},"vision_config":{"hidden_size":1152}})"),
                        "config.json");
  CHECK(c.model_type == "gemma4");
  CHECK(c.text_model_type == "gemma4_text");
  CHECK(c.hidden_size == 2816);
  CHECK(c.num_experts == 128);
  CHECK(c.num_experts_per_tok == 8);
  CHECK(c.moe_intermediate_size == 704);
  CHECK(c.architectures.at(0) == "Gemma4ForConditionalGeneration");
}

TEST_CASE("config: DeepSeek and Mixtral spellings of the expert count") {
  auto d = parse_config(nlohmann::json::parse(R"({"model_type":"deepseek_v3","num_hidden_layers":61,"hidden_size":7168,
    "n_routed_experts":256,"n_shared_experts":1,"first_k_dense_replace":3,"moe_intermediate_size":2048})"), "c");
  CHECK(d.num_experts == 256);
  CHECK(d.num_shared_experts == 1);
  CHECK(d.first_k_dense_replace == 3);
  auto m = parse_config(nlohmann::json::parse(R"({"model_type":"mixtral","num_hidden_layers":32,"hidden_size":4096,
    "num_local_experts":8,"intermediate_size":14336})"), "c");
  CHECK(m.num_experts == 8);
  CHECK(m.moe_intermediate_size == 14336);  // Mixtral's experts use intermediate_size
}

TEST_CASE("config: errors name the file and key") {
  REQUIRE_ERROR_MENTIONS(parse_config(nlohmann::json::parse(R"({"num_hidden_layers":2})"), "/m/config.json"),
                         "/m/config.json", "model_type");
  REQUIRE_ERROR_MENTIONS(parse_config(nlohmann::json::parse(R"({"model_type":"x","hidden_size":8})"), "/m/config.json"),
                         "num_hidden_layers");
  REQUIRE_ERROR_MENTIONS(
      parse_config(nlohmann::json::parse(R"({"model_type":"x","num_hidden_layers":"2","hidden_size":8})"), "c.json"),
      "c.json", "'num_hidden_layers'", "integer");
  REQUIRE_ERROR_MENTIONS(load_config("/nonexistent-dir"), "/nonexistent-dir/config.json", "cannot open");
}
