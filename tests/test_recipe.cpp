// Recipes: parsing, validation errors with file/line/suggestion, ModelOpt quant_cfg, and planning.
#include "export/layout.h"
#include "recipe/recipe.h"
#include "test_util.h"

using namespace moeq;

namespace {
Site site(const std::string& name, Role role, int64_t rows = 64, int64_t cols = 128, const std::string& module = "") {
  Site s;
  s.name = name;
  s.role = role;
  s.module = module.empty() ? "model." + name : module;
  s.view.rows = rows;
  s.view.cols = cols;
  s.proj = name.substr(name.rfind('.') + 1);
  return s;
}
std::vector<Site> sample_sites() {
  const std::string L = "model.layers.0.";
  return {site("layers.0.attn.q", Role::Attention, 64, 128, L + "self_attn.q_proj"),
          site("layers.0.router", Role::Router, 8, 128, L + "mlp.gate"),
          site("layers.0.experts.0.gate", Role::Expert, 64, 128, L + "mlp.experts.0.gate_proj"),
          site("layers.0.experts.0.up", Role::Expert, 64, 128, L + "mlp.experts.0.up_proj"),
          site("layers.0.experts.0.down", Role::Expert, 128, 64, L + "mlp.experts.0.down_proj"),
          site("lm_head", Role::LmHead, 256, 128, "lm_head")};
}
}  // namespace

TEST_CASE("recipe: later rules override earlier ones; protected roles need naming") {
  Recipe r = parse_recipe(R"(
rules:
  - sites: "*"
    format: nvfp4
  - sites: "layers.*.experts.*.down"
    format: fp8
  - sites: "layers.0.attn.*"
    enable: false
)", "r.yaml");
  auto sites = sample_sites();
  Plan p = make_plan(r, sites, false);
  REQUIRE(p.sites.size() == sites.size());
  CHECK_FALSE(p.sites[0].quantize);
  CHECK(p.sites[0].reason == "excluded by rule 3 (line 7)");
  CHECK_FALSE(p.sites[1].quantize);  // router: protected
  CHECK_THAT(p.sites[1].reason, Catch::Matchers::ContainsSubstring("protected role router"));
  CHECK(p.sites[2].format == "nvfp4");
  CHECK(p.sites[3].format == "nvfp4");
  CHECK(p.sites[4].format == "fp8");
  CHECK_FALSE(p.sites[5].quantize);  // lm_head: protected
  CHECK(p.warnings.empty());

  Recipe r2 = parse_recipe("rules:\n  - roles: [router]\n    format: fp8\n  - sites: nothing.*\n    enable: false\n", "r2.yaml");
  Plan p2 = make_plan(r2, sites, false);
  CHECK(p2.sites[1].quantize);
  CHECK(p2.sites[2].reason == "no rule matched");
  REQUIRE(p2.warnings.size() == 1);
  CHECK_THAT(p2.warnings[0], Catch::Matchers::ContainsSubstring("rule 2 (line 4) matched no site"));
  REQUIRE_ERROR_MENTIONS(make_plan(r2, sites, true), "matched no site", "--strict");
}

TEST_CASE("recipe: errors name the file, the line and a fix") {
  REQUIRE_ERROR_MENTIONS(parse_recipe("rules:\n  - sites: '*'\n    fromat: nvfp4\n", "x.yaml"), "x.yaml:3", "unknown key 'fromat'",
                         "did you mean 'format'");
  REQUIRE_ERROR_MENTIONS(parse_recipe("rules:\n  - sites: '*'\n    format: nvfp5\n", "x.yaml"), "x.yaml:3", "unknown format 'nvfp5'",
                         "fp8");
  REQUIRE_ERROR_MENTIONS(parse_recipe("rules:\n  - sites: '*'\n", "x.yaml"), "x.yaml:2", "names no 'format'");
  REQUIRE_ERROR_MENTIONS(parse_recipe("rules:\n  - sites: 're:('\n    enable: false\n", "x.yaml"), "bad regular expression");
  REQUIRE_ERROR_MENTIONS(parse_recipe("rules:\n  - roles: [expert]\n    enable: false\n", "x.yaml"), "unknown role 'expert'");
  REQUIRE_ERROR_MENTIONS(parse_recipe("rules: [\n", "x.yaml"), "x.yaml", "not valid YAML");
  // The export layout is checked where the plan meets the export (export/layout.h), still naming the line.
  REQUIRE_ERROR_MENTIONS(export_layout_for(parse_recipe("rules:\n  - sites: '*'\n    format: fp8\nexport: gguf\n", "x.yaml")),
                         "x.yaml:4", "unknown export 'gguf'", "bnb, compressed-tensors, modelopt");
  REQUIRE_ERROR_MENTIONS(load_recipe("/nonexistent.yaml"), "/nonexistent.yaml", "cannot open");
}

TEST_CASE("recipe: a block size that fits no matched site is an error, a partial misfit a warning") {
  auto sites = sample_sites();
  sites.push_back(site("layers.0.experts.1.gate", Role::Expert, 64, 96));
  Recipe bad = parse_recipe("rules:\n  - roles: [experts]\n    format: fp8\n    params: {granularity: row}\n", "b.yaml");
  REQUIRE_ERROR_MENTIONS(make_plan(bad, sites, false), "b.yaml", "rule 1 (line 2)", "do not fit fp8");
}

TEST_CASE("recipe: ModelOpt quant_cfg YAML translates to rules") {
  Recipe r = parse_recipe(R"(
quantize:
  algorithm: max
  quant_cfg:
    - quantizer_name: '*'
      enable: false
    - quantizer_name: '*experts*weight_quantizer'
      cfg: {num_bits: e2m1, block_sizes: {-1: 16, type: dynamic, scale_bits: e4m3}}
    - quantizer_name: '*experts*input_quantizer'
      cfg: {num_bits: e2m1, block_sizes: {-1: 16, type: dynamic, scale_bits: e4m3}}
    - quantizer_name: '*self_attn*weight_quantizer'
      cfg: {num_bits: e4m3, axis: null}
    - quantizer_name: '*lm_head*'
      enable: false
)", "mo.yaml");
  auto sites = sample_sites();
  Plan p = make_plan(r, sites, false);
  CHECK(p.sites[0].format == "fp8");
  CHECK_FALSE(p.sites[0].input_quant);
  CHECK(p.sites[2].format == "nvfp4");
  CHECK(p.sites[2].input_quant);
  CHECK_FALSE(p.sites[1].quantize);
  CHECK_FALSE(p.sites[5].quantize);
  REQUIRE_ERROR_MENTIONS(parse_recipe("quantize:\n  algorithm: awq_full\n  quant_cfg: []\n", "m.yaml"), "m.yaml:2", "awq_full");
}
