// bitsandbytes 4-bit export: quantize -> export -> moeq verify on every family, the tensors
// as transformers names and types them, verify catching broken exports, the writer's
// refusals and its skip list. (bitsandbytes and transformers read these exports in
// tests/python/consumer_bnb_export.py.)
#include <ATen/ATen.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "export/bnb/bnb_scheme.h"
#include "export/export_test_util.h"
#include "export/layout.h"
#include "export/verify.h"
#include "export/writer.h"
#include "formats/bnb4/bnb4.h"
#include "tensor/aten_view.h"
#include "io/checkpoint.h"
#include "model/demo_checkpoint.h"
#include "app/run/quantize.h"
#include "test_util.h"
#include "tiny_families.h"

using namespace moeq;
namespace fs = std::filesystem;

namespace {

std::string recipes_dir() { return std::string(MOEQ_SOURCE_DIR) + "/recipes"; }

// Demo checkpoint (2 layers, 4 experts, per-expert or fused) quantized with the rules; returns the export dir.
std::string quantize_demo(const test::TempDir& tmp, bool fused, const std::string& rules) {
  return test::quantize_demo_export(tmp, fused, "bnb", rules, "bnb");
}

std::string all_problems(const VerifyResult& r) {
  std::string all;
  for (const auto& p : r.problems) all += p + "\n";
  return all;
}

const char* kExpertsNf4 = "  - roles: [experts]\n    format: nf4\n    params: {double_quant: true}\n"
                          "  - roles: [attention]\n    enable: false\n";

}  // namespace

TEST_CASE("quantize + verify: bnb recipes nf4_experts and nf4_all on every family's tiny transformers checkpoint", "[tiny]") {
  const std::string root = test::tiny_dir();
  test::TempDir tmp;
  for (const std::string& fam : test::tiny_families()) {
    for (const char* recipe : {"nf4_experts", "nf4_all"}) {
      DYNAMIC_SECTION(fam << " " << recipe) {
        const std::string src = root + "/" + fam + "/model";
        QuantizeOptions o;
        o.model = src;
        o.recipe = recipes_dir() + "/" + recipe + ".yaml";
        o.out = tmp.path + "/" + fam + "-" + recipe;
        quantize_checkpoint(o);
        VerifyResult r = verify_export(o.out, src);
        INFO(all_problems(r));
        CHECK(r.problems.empty());
        CHECK(r.layout == "bnb");
        CHECK(r.experts_expected > 0);
        CHECK(r.experts_quantized == r.experts_expected);
        size_t quantized = 0;
        for (const auto& s : r.sites) {
          if (s.format.empty()) continue;
          ++quantized;
          CHECK(s.format == "nf4");
          CHECK(s.compared);
          CHECK(s.sqnr_db > 15.0);  // NF4 on Gaussian weights: about 20 dB
        }
        const auto rep = nlohmann::json::parse(test::read_file(o.out + "/report.json"));
        CHECK(rep["experts"]["quantized"] == rep["experts"]["total"]);
        if (std::string(recipe) == "nf4_experts") CHECK(quantized == r.experts_expected);
        else CHECK(quantized > r.experts_expected);  // attention (and dense / shared MLPs) too
        const auto qc = nlohmann::json::parse(test::read_file(o.out + "/config.json"))["quantization_config"];
        CHECK(qc["quant_method"] == "bitsandbytes");
        CHECK(qc["bnb_4bit_quant_type"] == "nf4");
        CHECK(qc["bnb_4bit_use_double_quant"] == true);
        CHECK(qc["llm_int8_skip_modules"].size() > 0);
      }
    }
  }
}

TEST_CASE("bnb export: tensors, quant_state and config as transformers saves a load_in_4bit model") {
  test::TempDir tmp;
  const std::string out = quantize_demo(tmp, true, kExpertsNf4);
  auto ck = Checkpoint::open(out);
  CHECK_FALSE(ck->has("model.layers.1.mlp.experts.gate_up_proj"));  // the fused stack is exported per expert
  // one gate_proj expert is [128, 256]: 32768 elements, 512 blocks of 64, 2 nested blocks of 256
  const std::string w = "model.layers.1.mlp.experts.2.gate_proj.weight";
  auto expect = [&](const std::string& name, DType dtype, std::vector<int64_t> shape) {
    INFO(name);
    REQUIRE(ck->has(name));
    CHECK(ck->info(name).dtype == dtype);
    CHECK(ck->info(name).shape == shape);
  };
  expect(w, DType::U8, {16384, 1});
  expect(w + ".absmax", DType::U8, {512});
  expect(w + ".quant_map", DType::F32, {16});
  expect(w + ".nested_absmax", DType::F32, {2});
  expect(w + ".nested_quant_map", DType::F32, {256});
  CHECK_FALSE(ck->has(w + ".nested_offset"));  // kept in the JSON, as bitsandbytes does
  // The quant_state bytes are the JSON of this expert, its own nested offset included.
  const at::Tensor st = tensor_view(*ck, w + ".quant_state.bitsandbytes__nf4");
  CHECK(st.scalar_type() == at::kByte);
  const std::string text(reinterpret_cast<const char*>(st.data_ptr<uint8_t>()), st.numel());
  const auto j = nlohmann::json::parse(text);
  CHECK(j["quant_type"] == "nf4");
  CHECK(j["blocksize"] == 64);
  CHECK(j["dtype"] == "bfloat16");
  CHECK(j["shape"] == nlohmann::json::array({128, 256}));
  CHECK(j["nested_blocksize"] == 256);
  CHECK(text.rfind("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [128, 256], "
                   "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": ", 0) == 0);
  // Experts of one stack carry different offsets (each is its own QuantState).
  const at::Tensor st0 = tensor_view(*ck, "model.layers.1.mlp.experts.0.gate_proj.weight.quant_state.bitsandbytes__nf4");
  CHECK(std::string(reinterpret_cast<const char*>(st0.data_ptr<uint8_t>()), st0.numel()) != text);
  // Attention stays bf16 under its own name; routers and lm_head too.
  expect("model.layers.0.self_attn.q_proj.weight", DType::BF16, {256, 256});
  CHECK_FALSE(ck->has("model.layers.0.self_attn.q_proj.weight.absmax"));

  const auto qc = nlohmann::json::parse(test::read_file(out + "/config.json"))["quantization_config"];
  const nlohmann::json want = {
      {"_load_in_4bit", true}, {"_load_in_8bit", false}, {"bnb_4bit_compute_dtype", "bfloat16"},
      {"bnb_4bit_quant_storage", "uint8"}, {"bnb_4bit_quant_type", "nf4"}, {"bnb_4bit_use_double_quant", true},
      {"llm_int8_enable_fp32_cpu_offload", false}, {"llm_int8_has_fp16_weight", false},
      {"llm_int8_skip_modules", qc["llm_int8_skip_modules"]}, {"llm_int8_threshold", 6.0}, {"load_in_4bit", true},
      {"load_in_8bit", false}, {"quant_method", "bitsandbytes"}};
  CHECK(qc == want);
  std::set<std::string> skip = qc["llm_int8_skip_modules"].get<std::set<std::string>>();
  for (const char* m : {"lm_head", "model.embed_tokens", "model.layers.0.mlp.gate", "model.layers.1.mlp.gate",
                        "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.o_proj"})
    CHECK(skip.count(m));
  CHECK(skip.size() == 2 + 2 + 2 * 4);  // no norms, no quantized module
}

TEST_CASE("verify: a bnb export with a deleted expert absmax or quant_state, or an orphan, fails naming the expert") {
  test::TempDir tmp;
  const std::string out = quantize_demo(tmp, false, kExpertsNf4);
  const std::string src = tmp.path + "/flat";
  {
    VerifyResult r = verify_export(out, src);
    INFO(all_problems(r));
    REQUIRE(r.problems.empty());
    CHECK(r.experts_quantized == 2 * 4 * 3);
  }
  test::rewrite_export(out, [](const std::string& n, at::Tensor& t) {
    if (n == "model.layers.0.mlp.experts.1.down_proj.weight.absmax") return false;
    if (n == "model.layers.1.mlp.experts.3.up_proj.weight.quant_state.bitsandbytes__nf4") return false;
    if (n == "model.layers.1.mlp.experts.0.gate_proj.weight.nested_absmax") t.mul_(3);  // decodes wrong
    if (n == "model.layers.0.mlp.experts.2.gate_proj.weight") return false;              // its quant state left behind
    return true;
  });
  VerifyResult r = verify_export(out, src);
  const std::string all = all_problems(r);
  INFO(all);
  using Catch::Matchers::ContainsSubstring;
  CHECK_THAT(all, ContainsSubstring("layers.0.experts.1.down (model.layers.0.mlp.experts.1.down_proj): missing absmax (nf4, double quant)"));
  CHECK_THAT(all, ContainsSubstring("layers.1.experts.3.up (model.layers.1.mlp.experts.3.up_proj): packed 4-bit weight (U8) without its quant_state"));
  CHECK_THAT(all, ContainsSubstring("layers.1.experts.0.gate (model.layers.1.mlp.experts.0.gate_proj): SQNR"));
  CHECK_THAT(all, ContainsSubstring("'model.layers.0.mlp.experts.2.gate_proj.weight.absmax' is a quantization parameter with no quantized weight"));
  CHECK_THAT(all, ContainsSubstring("layer 0: 1 expert weights missing (first: expert 2.gate)"));
  CHECK(r.experts_quantized == 2 * 4 * 3 - 3);
}

TEST_CASE("verify: bnb fp4 without double quant, block 128, per-expert and fused sources") {
  test::TempDir tmp;
  for (bool fused : {false, true}) {
    const std::string out = quantize_demo(tmp, fused, "  - sites: \"*\"\n    format: fp4\n    params: {block_size: 128}\n");
    VerifyResult r = verify_export(out, tmp.path + (fused ? "/fused" : "/flat"));
    INFO(all_problems(r));
    CHECK(r.problems.empty());
    CHECK(r.experts_quantized == 2 * 4 * 3);
    auto ck = Checkpoint::open(out);
    const std::string w = "model.layers.0.self_attn.k_proj.weight";  // [128, 256]: 256 blocks of 128
    CHECK(ck->info(w + ".absmax").dtype == DType::F32);
    CHECK(ck->info(w + ".absmax").shape == std::vector<int64_t>{256});
    CHECK(ck->has(w + ".quant_state.bitsandbytes__fp4"));
    CHECK_FALSE(ck->has(w + ".nested_absmax"));
    const auto qc = nlohmann::json::parse(test::read_file(out + "/config.json"))["quantization_config"];
    CHECK(qc["bnb_4bit_quant_type"] == "fp4");
    CHECK(qc["bnb_4bit_use_double_quant"] == false);
  }
}

TEST_CASE("bnb export: refuses formats, embeddings and mixed quant types it cannot write") {
  const ExportWriter& w = *export_layout("bnb").writer;
  Site site;
  site.name = "layers.0.experts.0.gate";
  site.role = Role::Expert;
  SitePlan p;
  p.site = &site;
  p.quantize = true;
  p.format = "nvfp4";
  REQUIRE_ERROR_MENTIONS(w.check(p), "export bnb", "layers.0.experts.0.gate", "nvfp4", "export: modelopt");
  p.format = "nf4";
  site.role = Role::Embedding;
  REQUIRE_ERROR_MENTIONS(w.check(p), "is an embedding");
  test::TempDir tmp;
  REQUIRE_ERROR_MENTIONS(quantize_demo(tmp, false, "  - roles: [experts]\n    format: nf4\n  - roles: [attention]\n    format: fp4\n"),
                         "export bnb", "one bnb_4bit_quant_type");
  CHECK_FALSE(fs::exists(tmp.path + "/flat-bnb"));
}

TEST_CASE("bnb export: llm_int8_skip_modules entries skip exactly the unquantized modules, as transformers matches them") {
  using bnb_scheme::skip_entry_matches;
  // transformers: re.match(entry) (a regex prefix, '.' any character) or module.endswith(entry)
  CHECK(skip_entry_matches("model.layers.0.mlp.gate", "model.layers.0.mlp.gate"));
  CHECK(skip_entry_matches("model.layers.0.mlp.gate", "model.layers.0.mlp.gate_proj"));
  CHECK(skip_entry_matches("model.layers.1", "model.layers.10.mlp.gate_proj"));
  CHECK(skip_entry_matches("lm_head", "lm_head"));
  CHECK(skip_entry_matches("gate_proj", "model.layers.3.mlp.gate_proj"));
  CHECK_FALSE(skip_entry_matches("model.layers.1.self_attn.q_proj", "model.layers.11.self_attn.q_proj"));
  const std::string anchored = bnb_scheme::anchored_skip_entry("model.layers.0.mlp.gate");
  CHECK(anchored == "model\\.layers\\.0\\.mlp\\.gate$");
  CHECK(skip_entry_matches(anchored, "model.layers.0.mlp.gate"));
  CHECK_FALSE(skip_entry_matches(anchored, "model.layers.0.mlp.gate_proj"));
  REQUIRE_ERROR_MENTIONS(skip_entry_matches("model.*", "x"), "llm_int8_skip_modules entry 'model.*'");

  // The writer anchors a kept module whose plain name would also skip a quantized one.
  Site router, dense;
  router.name = "layers.0.router";
  router.module = "model.layers.0.mlp.gate";
  router.role = Role::Router;
  dense.name = "layers.0.mlp.gate";
  dense.module = "model.layers.0.mlp.gate_proj";
  dense.role = Role::DenseMlp;
  Plan plan;
  plan.sites.push_back(SitePlan{&router, false, "", {}, false, nullptr, "protected"});
  plan.sites.push_back(SitePlan{&dense, true, "nf4", {}, false, nullptr, "rule 1"});
  nlohmann::json config = {{"dtype", "float16"}};
  export_layout("bnb").writer->finish("", config, plan, Recipe{});
  CHECK(config["quantization_config"]["llm_int8_skip_modules"] == nlohmann::json::array({anchored}));
  CHECK(config["quantization_config"]["bnb_4bit_compute_dtype"] == "float16");
  CHECK(config["quantization_config"]["bnb_4bit_use_double_quant"] == false);
}
