// Every plugin family against checkpoints saved by transformers 5.17 (tests/python/make_tiny.py):
// every tensor claimed, every expert of every layer present, and each expert site's
// [out, in] view equal, value for value, to the weight transformers' forward uses.
#include <ATen/ATen.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "tensor/aten_view.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "model/plugin.h"
#include "test_util.h"

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
  const char* families[] = {"qwen3_moe", "olmoe", "mixtral", "gemma4", "deepseek_v3", "gpt_oss", "glm4_moe", "qwen3_5_moe"};
  for (const char* fam : families) {
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

TEST_CASE("plugins: the registry holds the eight families") {
  std::set<std::string> fams;
  for (const auto& p : all_plugins()) fams.insert(p.family);
  CHECK(fams == std::set<std::string>{"Qwen3-MoE", "OLMoE", "Mixtral", "Gemma4", "DeepSeek-V3", "gpt-oss", "GLM-4-MoE",
                                      "Qwen3.5-MoE"});
}
