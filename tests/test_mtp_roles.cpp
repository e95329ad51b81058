// MTP layers and towers: every tensor of a layer past num_hidden_layers (GLM-4.5, DeepSeek-V3)
// or of the top-level mtp.* tree (Qwen3-Next, Qwen3.5) is role mtp; vision towers are role
// tower; both are protected from recipes that do not name them.
#include <algorithm>

#include "model/config.h"
#include "model/plugin.h"
#include "recipe/recipe.h"
#include "test_util.h"

using namespace moeq;

namespace {

struct Fake {
  std::vector<TensorInfo> infos;
  void add(const std::string& name, std::vector<int64_t> shape) {
    TensorInfo t;
    t.name = name;
    t.dtype = DType::BF16;
    t.shape = std::move(shape);
    int64_t n = 2;
    for (int64_t d : t.shape) n *= d;
    t.end = static_cast<uint64_t>(n);
    infos.push_back(t);
  }
  SiteMap map(const ModelConfig& c) const {
    std::vector<const TensorInfo*> p;
    for (const auto& t : infos) p.push_back(&t);
    return map_sites(plugin_for(c), c, p, "fake");
  }
};

const Site* find_site(const SiteMap& m, const std::string& name) {
  for (const auto& s : m.sites)
    if (s.name == name) return &s;
  return nullptr;
}

const AuxTensor* find_aux(const SiteMap& m, const std::string& tensor) {
  for (const auto& a : m.aux)
    if (a.tensor == tensor) return &a;
  return nullptr;
}

ModelConfig glm_config(int extra_mtp) {
  return parse_config(nlohmann::json::parse(
                          R"({"model_type":"glm4_moe","num_hidden_layers":1,"hidden_size":16,"n_routed_experts":2,
                              "moe_intermediate_size":8,"num_nextn_predict_layers":)" +
                          std::to_string(extra_mtp) + "}"),
                      "config.json");
}

void glm_mtp_layer(Fake& f, int L) {
  const std::string p = "model.layers." + std::to_string(L) + ".";
  f.add(p + "self_attn.q_proj.weight", {16, 16});
  f.add(p + "mlp.gate.weight", {2, 16});
  f.add(p + "mlp.gate.e_score_correction_bias", {2});
  for (int e = 0; e < 2; ++e)
    for (const char* proj : {"gate_proj", "up_proj", "down_proj"})
      f.add(p + "mlp.experts." + std::to_string(e) + "." + proj + ".weight", {8, 16});
  f.add(p + "eh_proj.weight", {16, 32});
  f.add(p + "enorm.weight", {16});
  f.add(p + "hnorm.weight", {16});
  f.add(p + "shared_head.head.weight", {64, 16});
  f.add(p + "shared_head.norm.weight", {16});
  f.add(p + "embed_tokens.weight", {64, 16});
}

}  // namespace

TEST_CASE("mtp: GLM's layer num_hidden_layers is role mtp with every sub-tensor, sites named mtp.*") {
  Fake f;
  f.add("model.layers.0.self_attn.q_proj.weight", {16, 16});
  glm_mtp_layer(f, 1);
  const SiteMap m = f.map(glm_config(1));
  CHECK(m.unclaimed.empty());
  const Site* trunk = find_site(m, "layers.0.attn.q");
  REQUIRE(trunk);
  CHECK(trunk->role == Role::Attention);
  for (const char* n : {"mtp.layers.1.attn.q", "mtp.layers.1.router", "mtp.layers.1.experts.1.up", "mtp.layers.1.eh_proj",
                        "mtp.layers.1.shared_head"}) {
    const Site* s = find_site(m, n);
    REQUIRE(s);
    CHECK(s->role == Role::Mtp);
    CHECK(s->layer == 1);
  }
  CHECK(find_site(m, "mtp.layers.1.experts.1.up")->expert == 1);
  for (const char* t : {"model.layers.1.enorm.weight", "model.layers.1.hnorm.weight", "model.layers.1.shared_head.norm.weight",
                        "model.layers.1.embed_tokens.weight", "model.layers.1.mlp.gate.e_score_correction_bias"}) {
    const AuxTensor* a = find_aux(m, t);
    REQUIRE(a);
    CHECK(a->role == Role::Mtp);
  }
  // No expert role past the trunk: missing_experts and the coverage line count the trunk only.
  CHECK(std::none_of(m.sites.begin(), m.sites.end(), [](const Site& s) { return s.role == Role::Expert; }));
}

TEST_CASE("mtp: a layer past num_hidden_layers + num_nextn_predict_layers is an error naming the tensor") {
  Fake f;
  glm_mtp_layer(f, 2);
  CHECK_THROWS_WITH(f.map(glm_config(1)), Catch::Matchers::ContainsSubstring("model.layers.2.") &&
                                              Catch::Matchers::ContainsSubstring("MTP layers"));
}

TEST_CASE("mtp: Qwen3-Next's top-level mtp tree counts its layers after the trunk's") {
  const ModelConfig c = parse_config(nlohmann::json::parse(
      R"({"model_type":"qwen3_next","num_hidden_layers":4,"hidden_size":16,"num_experts":2,"moe_intermediate_size":8,
          "full_attention_interval":4})"), "config.json");
  Fake f;
  f.add("model.layers.0.mlp.experts.0.gate_proj.weight", {8, 16});
  f.add("mtp.layers.0.mlp.experts.1.gate_proj.weight", {8, 16});
  f.add("mtp.layers.0.self_attn.q_proj.weight", {16, 16});
  f.add("mtp.layers.0.input_layernorm.weight", {16});
  f.add("mtp.fc.weight", {16, 32});
  f.add("mtp.pre_fc_norm_embedding.weight", {16});
  f.add("mtp.norm.weight", {16});
  const SiteMap m = f.map(c);
  CHECK(m.unclaimed.empty());
  CHECK(find_site(m, "layers.0.experts.0.gate")->role == Role::Expert);
  const Site* e = find_site(m, "mtp.layers.0.experts.1.gate");
  REQUIRE(e);
  CHECK(e->role == Role::Mtp);
  CHECK(e->layer == 4);
  CHECK(e->expert == 1);
  CHECK(find_site(m, "mtp.layers.0.attn.q")->role == Role::Mtp);
  CHECK(find_site(m, "mtp.fc")->role == Role::Mtp);
  CHECK(find_aux(m, "mtp.layers.0.input_layernorm.weight")->layer == 4);
  CHECK(find_aux(m, "mtp.norm.weight")->role == Role::Mtp);
}

TEST_CASE("mtp / tower: protected unless a rule names the role") {
  const ModelConfig c = parse_config(nlohmann::json::parse(
      R"({"model_type":"qwen3_5_moe","text_config":{"model_type":"qwen3_5_moe_text","num_hidden_layers":1,
          "hidden_size":16,"num_experts":2,"moe_intermediate_size":16}})"), "config.json");
  Fake f;
  f.add("model.language_model.layers.0.mlp.experts.gate_up_proj", {2, 32, 16});
  f.add("model.language_model.layers.0.mlp.experts.down_proj", {2, 16, 16});
  f.add("mtp.layers.0.mlp.experts.0.gate_proj.weight", {16, 16});
  f.add("model.visual.blocks.0.attn.qkv.weight", {48, 16});
  const SiteMap m = f.map(c);
  CHECK(m.unclaimed.empty());
  CHECK(find_aux(m, "model.visual.blocks.0.attn.qkv.weight")->role == Role::Tower);
  const Recipe all = parse_recipe("recipe: t\nrules:\n  - sites: \"*\"\n    format: fp8\n", "all.yaml");
  const Plan p = make_plan(all, m.sites, false);
  for (const auto& sp : p.sites) {
    if (sp.site->role == Role::Mtp) {
      CHECK_FALSE(sp.quantize);
      CHECK_THAT(sp.reason, Catch::Matchers::ContainsSubstring("protected role mtp"));
    } else {
      CHECK(sp.quantize);
    }
  }
  const Recipe named = parse_recipe("recipe: t\nrules:\n  - roles: [experts, mtp]\n    format: fp8\n", "mtp.yaml");
  for (const auto& sp : make_plan(named, m.sites, false).sites) CHECK(sp.quantize);
  CHECK_THROWS_WITH(parse_recipe("recipe: t\nrules:\n  - roles: [mtpp]\n    format: fp8\n", "bad.yaml"),
                    Catch::Matchers::ContainsSubstring("mtp, tower"));
}
