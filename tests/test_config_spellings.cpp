// Every spelling of a config fact that published checkpoints use, one case each: the typed
// ModelConfig gives the same value whichever spelling the file has.
#include "core/error.h"
#include "model/config.h"
#include "test_util.h"

using namespace moeq;

namespace {
ModelConfig cfg(const std::string& extra) {
  return parse_config(nlohmann::json::parse(R"({"model_type":"x","num_hidden_layers":4,"hidden_size":64)" +
                                            std::string(extra.empty() ? "" : ",") + extra + "}"),
                      "config.json");
}
}  // namespace

TEST_CASE("config spelling: rope_parameters (transformers 5) and rope_scaling (4.x) give the same RoPE") {
  const ModelConfig a = cfg(R"("rope_parameters":{"rope_type":"yarn","rope_theta":10000,"factor":40,
                               "partial_rotary_factor":0.5})");
  const ModelConfig b = cfg(R"("rope_scaling":{"type":"yarn","factor":40},"rope_theta":10000,"partial_rotary_factor":0.5)");
  for (const ModelConfig* c : {&a, &b}) {
    CHECK(c->rope_type == "yarn");
    CHECK(c->rope_theta == 10000.0);
    CHECK(c->partial_rotary_factor == 0.5);
    CHECK(c->rope.at("factor") == 40);
  }
  // rope_scaling: null (GLM-4.5, Qwen3-Next) is no RoPE scaling: default, theta at top level.
  const ModelConfig n = cfg(R"("rope_scaling":null,"rope_theta":1000000)");
  CHECK(n.rope.is_null());
  CHECK(n.rope_type == "default");
  CHECK(n.rope_theta == 1000000.0);
  // rope_scaling's rope_type (gpt-oss) wins over nothing, as `type` does.
  CHECK(cfg(R"("rope_scaling":{"rope_type":"yarn","factor":32})").rope_type == "yarn");
  CHECK_THROWS_WITH(cfg(R"("rope_scaling":"yarn")"), Catch::Matchers::ContainsSubstring("'rope_scaling' should be an object"));
}

TEST_CASE("config spelling: dtype (transformers 5) and torch_dtype (4.x)") {
  CHECK(cfg(R"("dtype":"bfloat16")").dtype == "bfloat16");
  CHECK(cfg(R"("torch_dtype":"bfloat16")").dtype == "bfloat16");
  CHECK(cfg(R"("dtype":"float32","torch_dtype":"bfloat16")").dtype == "float32");  // the 5.x key first
  CHECK(cfg("").dtype.empty());
  // Nested text_config (Qwen3.5, Gemma4) first.
  const ModelConfig m = parse_config(nlohmann::json::parse(R"({"model_type":"qwen3_5_moe","dtype":"float16",
    "text_config":{"model_type":"qwen3_5_moe_text","num_hidden_layers":2,"hidden_size":8,"dtype":"bfloat16"}})"), "c");
  CHECK(m.dtype == "bfloat16");
}

TEST_CASE("config spelling: num_experts, num_local_experts and n_routed_experts") {
  CHECK(cfg(R"("num_experts":8)").num_experts == 8);           // Qwen3-MoE, Qwen3-Next, Qwen3.5, Gemma4
  CHECK(cfg(R"("num_local_experts":8)").num_experts == 8);     // Mixtral, gpt-oss
  CHECK(cfg(R"("n_routed_experts":8)").num_experts == 8);      // DeepSeek-V3, GLM-4.5
}

TEST_CASE("config spelling: experts_per_token (gpt-oss), top_k_experts (Gemma4), num_experts_per_tok") {
  CHECK(cfg(R"("num_experts":8,"experts_per_token":4)").num_experts_per_tok == 4);
  CHECK(cfg(R"("num_experts":8,"top_k_experts":3)").num_experts_per_tok == 3);
  CHECK(cfg(R"("num_experts":8,"num_experts_per_tok":2)").num_experts_per_tok == 2);
}

TEST_CASE("config spelling: expert width from intermediate_size without moe_intermediate_size") {
  // gpt-oss-20b: num_local_experts 32, intermediate_size 2880 = each expert's width.
  const ModelConfig g = cfg(R"("num_local_experts":32,"intermediate_size":2880)");
  CHECK(g.moe_intermediate_size == 2880);
  // With moe_intermediate_size, intermediate_size is the dense MLP's (DeepSeek-V3, GLM-4.5).
  const ModelConfig d = cfg(R"("n_routed_experts":8,"intermediate_size":18432,"moe_intermediate_size":2048)");
  CHECK(d.moe_intermediate_size == 2048);
  CHECK(d.intermediate_size == 18432);
  // No experts: no expert width.
  CHECK(cfg(R"("intermediate_size":256)").moe_intermediate_size == 0);
}

TEST_CASE("config spelling: Qwen3-Next's full_attention_interval without layer_types") {
  // transformers 5.17 configuration_qwen3_next.py: layer i is full attention when (i+1) % interval == 0.
  const ModelConfig q = cfg(R"("full_attention_interval":2)");
  CHECK(q.layer_types ==
        std::vector<std::string>{"linear_attention", "full_attention", "linear_attention", "full_attention"});
  // layer_types, when present, is taken as it is.
  const ModelConfig l = cfg(R"("layer_types":["full_attention","linear_attention","linear_attention","linear_attention"],
                               "full_attention_interval":4)");
  CHECK(l.layer_types.at(0) == "full_attention");
  CHECK(l.layer_types.at(3) == "linear_attention");
  CHECK(cfg("").layer_types.empty());
  CHECK_THROWS_WITH(cfg(R"("full_attention_interval":0)"), Catch::Matchers::ContainsSubstring("full_attention_interval"));
}

TEST_CASE("config spelling: MTP layers as num_nextn_predict_layers or mtp_num_hidden_layers") {
  CHECK(cfg(R"("num_nextn_predict_layers":1)").num_mtp_layers == 1);  // DeepSeek-V3, GLM-4.5
  CHECK(cfg(R"("mtp_num_hidden_layers":1)").num_mtp_layers == 1);     // Qwen3.5
  CHECK(cfg("").num_mtp_layers == 0);
}
