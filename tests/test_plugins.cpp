// Every plugin family against checkpoints saved by transformers 5.17 (tests/python/make_tiny.py):
// every tensor claimed, every expert of every layer present, and each expert site's
// [out, in] view equal, value for value, to the weight transformers' forward uses.
#include <ATen/ATen.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "tensor/aten_view.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "model/plugin.h"
#include "test_util.h"
#include "tiny_families.h"

using namespace moeq;

namespace {

void check_variant(const std::string& fam_dir, const std::string& variant, const nlohmann::json& oracle_meta) {
  const std::string dir = fam_dir + "/" + variant;
  INFO("checkpoint " << dir);
  const ModelConfig cfg = load_config(dir);
  const ArchPlugin& plugin = plugin_for(cfg);
  auto ckpt = Checkpoint::open(dir);
  const SiteMap map = map_sites(plugin, cfg, *ckpt);
  CHECK(map.unclaimed.empty());
  for (const auto& u : map.unclaimed) UNSCOPED_INFO("unclaimed: " << u);
  CHECK(missing_experts(map, cfg).empty());
  if (variant == "model") CHECK(ckpt->names().size() == oracle_meta["tensor_count"].get<size_t>());
  // Every stored tensor is either the home of a site or an aux tensor.
  std::set<std::string> claimed;
  for (const auto& s : map.sites) claimed.insert(s.view.tensor);
  for (const auto& a : map.aux) claimed.insert(a.tensor);
  CHECK(claimed.size() + map.unclaimed.size() == ckpt->names().size());

  std::set<int64_t> expert_layers;
  size_t expert_sites = 0;
  auto oracle = Checkpoint::open_file(fam_dir + "/oracle.safetensors");
  for (const auto& s : map.sites) {
    if (s.role != Role::Expert) continue;
    expert_layers.insert(s.layer);
    ++expert_sites;
    const std::string key = "layers." + std::to_string(s.layer) + ".experts." + std::to_string(s.expert) + "." + s.proj;
    INFO("site " << s.name << " <- " << key);
    REQUIRE(oracle->has(key));
    at::Tensor want = tensor_view(*oracle, key);
    at::Tensor got = site_weight(*ckpt, s);
    REQUIRE(got.sizes() == want.sizes());
    CHECK(at::equal(got, want));
  }
  const auto want_layers = oracle_meta["expert_layers"].get<std::set<int64_t>>();
  CHECK(expert_layers == want_layers);
  CHECK(expert_sites == want_layers.size() * oracle_meta["num_experts"].get<size_t>() * 3);
  CHECK(map.expert_layout == (variant == "fused" || oracle_meta["fused_on_disk"].get<bool>() ? "fused 3D" : "per-expert 2D"));
}

}  // namespace

TEST_CASE("plugins: every family's tiny transformers checkpoint maps completely and exactly", "[tiny]") {
  const std::string root = test::tiny_dir();
  for (const std::string& fam : test::tiny_families()) {
    DYNAMIC_SECTION(fam) {
      const std::string fam_dir = root + "/" + fam;
      const auto meta = nlohmann::json::parse(test::read_file(fam_dir + "/oracle.json"));
      check_variant(fam_dir, "model", meta);
      if (std::filesystem::exists(fam_dir + "/fused")) check_variant(fam_dir, "fused", meta);
      else CHECK(meta["fused_on_disk"].get<bool>());
    }
  }
}

TEST_CASE("plugins: an unknown model_type lists the known ones") {
  ModelConfig c = parse_config(nlohmann::json::parse(R"({"model_type":"llama","num_hidden_layers":1,"hidden_size":8})"),
                               "/m/config.json");
  REQUIRE_ERROR_MENTIONS(plugin_for(c), "/m/config.json", "'llama'", "qwen3_moe", "gemma4", "gpt_oss", "deepseek_v3");
}

TEST_CASE("plugins: every architecture record is complete and registered under its family name") {
  REQUIRE_FALSE(Architectures::instance().entries().empty());
  for (const auto& e : Architectures::instance().entries()) {
    INFO(e.name);
    CHECK(e.name == e.item.family);
    CHECK_FALSE(e.item.model_types.empty());
    CHECK(static_cast<bool>(e.item.rules));
    CHECK(static_cast<bool>(e.item.decoder));  // every family has a native forward today
  }
}

// tests/python/tiny_models.py is the one place the tests name a family: its entries and the
// registry must agree, so that a registration the linker dropped (or a tiny model without its
// plugin) fails here rather than silently shrinking every per-family test.
TEST_CASE("plugins: the registered architectures are exactly the tiny models of tests/python/tiny_models.py") {
  const std::string py = test::read_file(std::string(MOEQ_SOURCE_DIR) + "/tests/python/tiny_models.py");
  std::set<std::string> tiny;
  const std::regex entry(R"re(\n    "([a-z0-9_]+)": dict\()re");
  for (std::sregex_iterator it(py.begin(), py.end(), entry), end; it != end; ++it) tiny.insert((*it)[1]);
  const std::vector<std::string> fams = test::tiny_families();
  CHECK(std::set<std::string>(fams.begin(), fams.end()) == tiny);
  CHECK(fams.size() == Architectures::instance().entries().size());
}

TEST_CASE("plugins: fusion groups come from the architecture records, one group per projection") {
  Site s;
  s.name = "layers.3.attn.q";
  s.proj = "q";
  CHECK(fusion_group(s) == "layers.3.attn.{q,k,v}");
  s.name = "layers.0.attn.q_a";
  s.proj = "q_a";
  CHECK(fusion_group(s) == "layers.0.attn.{q_a,kv_a}");  // DeepSeek-V3's record
  s.name = "layers.0.linear_attn.in_proj_b";
  s.proj = "in_proj_b";
  CHECK(fusion_group(s) == "layers.0.linear_attn.{in_proj_b,in_proj_a}");  // Qwen3.5-MoE's
  s.name = "layers.0.attn.o";
  s.proj = "o";
  CHECK(fusion_group(s).empty());
}

TEST_CASE("plugins: Qwen3-Next maps through the Qwen3.5-MoE record but has no native forward") {
  // Qwen3-Next maps through the Qwen3.5-MoE record, but its fused in_proj_qkvz layout has no forward.
  ModelConfig c = parse_config(nlohmann::json::parse(R"({"model_type":"qwen3_next","num_hidden_layers":1,"hidden_size":8})"),
                               "/m/config.json");
  REQUIRE_ERROR_MENTIONS(plugin_for(c).decoder(c), "no native forward", "qwen3_next", "/m/config.json");
}
