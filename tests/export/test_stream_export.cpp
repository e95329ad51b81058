// Streamed exports (ShardWriter::stream, app/run/export_layout.h): the layout is planned before
// quantizing and every tensor written at its offset as it comes. The files must be those of
// the buffered path, byte for byte; part_specs must be what quantize() returns.
#include <ATen/ATen.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "export/export_test_util.h"
#include "export/layout.h"
#include "export/shard_writer.h"
#include "formats/format.h"
#include "formats/part_specs.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "model/demo_checkpoint.h"
#include "model/plugin.h"
#include "app/run/export_layout.h"
#include "app/run/quantize.h"
#include "recipe/recipe.h"
#include "test_util.h"

using namespace moeq;
namespace fs = std::filesystem;

namespace {

// File name -> bytes, for every file of an export but the report (which names the output).
std::map<std::string, std::string> files_of(const std::string& dir) {
  std::map<std::string, std::string> f;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("report.", 0) != 0) f[name] = test::read_file(e.path().string());
  }
  return f;
}

void check_same_files(const std::string& a, const std::string& b) {
  const auto fa = files_of(a), fb = files_of(b);
  std::vector<std::string> na, nb;
  for (const auto& [n, _] : fa) na.push_back(n);
  for (const auto& [n, _] : fb) nb.push_back(n);
  REQUIRE(na == nb);
  for (const auto& [n, bytes] : fa) {
    INFO(n);
    CHECK(bytes.size() == fb.at(n).size());
    CHECK(bytes == fb.at(n));
  }
}

const char* kMixedRules =  // experts NVFP4 (but layer 1's kept), attention NVFP4 but o kept: stacks, 2D sites, splits
    "  - roles: [experts]\n    format: nvfp4\n"
    "  - sites: \"layers.1.experts.*\"\n    enable: false\n"
    "  - roles: [attention]\n    format: nvfp4\n"
    "  - sites: \"layers.*.attn.o\"\n    enable: false\n"
    "  - roles: [dense_mlp, shared_experts, other]\n    enable: false\n";

}  // namespace

TEST_CASE("stream export: part_specs are the dtypes and shapes quantize returns") {
  struct Case { std::string format; FormatParams p; };
  FormatParams channel;
  channel.granularity = "channel";
  const std::vector<Case> cases = {{"nvfp4", {}}, {"fp8", {}}, {"fp8", channel}};
  for (const auto& c : cases)
    for (const std::vector<int64_t>& shape : {std::vector<int64_t>{48, 64}, std::vector<int64_t>{3, 48, 64}}) {
      DYNAMIC_SECTION(c.format << " " << c.p.granularity << " " << shape.size() << "D") {
        const QuantFormat& f = format_by_name(c.format);
        const at::Tensor w = (at::randn(shape, at::kFloat) * 0.02).to(at::kBFloat16);
        const QuantizedTensor q = f.quantize(w, c.p);
        const auto specs = part_specs(c.format, shape, c.p);
        REQUIRE(specs.has_value());
        REQUIRE(specs->size() == q.parts.size());
        for (const auto& [name, t] : q.parts) {
          INFO(name);
          REQUIRE(specs->count(name));
          CHECK(specs->at(name).dtype == t.scalar_type());
          CHECK(specs->at(name).shape == t.sizes().vec());
        }
      }
    }
  // Formats that do not declare parts leave the export buffered.
  CHECK_FALSE(part_specs("nf4", {48, 64}, {}).has_value());
  REQUIRE_ERROR_MENTIONS(part_specs("nvfp4", {48, 40}, {}), "not divisible by the block size 16");
}

TEST_CASE("stream export: ShardWriter streaming writes the buffered files, in any order") {
  test::TempDir tmp;
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (int i = 0; i < 7; ++i)
    tensors.emplace_back("t" + std::to_string(i), at::arange(100 * (i + 1), at::kFloat).to(i % 2 ? at::kBFloat16 : at::kFloat));
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"producer", "moeq"}};
  for (uint64_t max : {~uint64_t{0}, uint64_t{1500}}) {  // one shard; several (and the metadata of each)
    DYNAMIC_SECTION("max shard bytes " << (max == ~uint64_t{0} ? "none" : "1500")) {
      const std::string a = tmp.path + "/buffered-" + std::to_string(max), b = tmp.path + "/streamed-" + std::to_string(max);
      fs::create_directories(a);
      fs::create_directories(b);
      ShardWriter buffered(a, max);
      for (const auto& [n, t] : tensors) buffered.add(n, t);
      buffered.finish(meta);
      ShardWriter streamed(b, max);
      LayoutRecorder rec;
      for (const auto& [n, t] : tensors) rec.add(n, at::empty(t.sizes(), t.options().device(at::kMeta)));
      streamed.stream(rec.specs(), meta);
      REQUIRE(streamed.streaming());
      for (auto it = tensors.rbegin(); it != tensors.rend(); ++it) streamed.add(it->first, it->second);
      streamed.finish(meta);
      CHECK(streamed.bytes_written() == buffered.bytes_written());
      CHECK(streamed.weight_map() == buffered.weight_map());
      check_same_files(a, b);
      if (max != ~uint64_t{0}) CHECK(fs::exists(b + "/model.safetensors.index.json"));
    }
  }
}

TEST_CASE("stream export: ShardWriter refuses what was not planned, and a tensor never written") {
  test::TempDir tmp;
  ShardWriter w(tmp.path, ~0ull);
  LayoutRecorder rec;
  rec.add("a", at::empty({4, 8}, at::TensorOptions().dtype(at::kBFloat16).device(at::kMeta)));
  rec.add("b", at::empty({2}, at::TensorOptions().dtype(at::kFloat).device(at::kMeta)));
  w.stream(rec.specs(), {{"format", "pt"}});
  REQUIRE_ERROR_MENTIONS(w.add("c", at::zeros({2})), "'c'", "not among the planned tensors");
  REQUIRE_ERROR_MENTIONS(w.add("a", at::zeros({4, 8}, at::kFloat)), "'a'", "F32 [4, 8]", "planned BF16 [4, 8]");
  REQUIRE_ERROR_MENTIONS(w.add("b", at::zeros({3})), "'b'", "[3]", "planned F32 [2]");
  w.add("a", at::zeros({4, 8}, at::kBFloat16));
  REQUIRE_ERROR_MENTIONS(w.add("a", at::zeros({4, 8}, at::kBFloat16)), "'a'", "written twice");
  REQUIRE_ERROR_MENTIONS(w.finish({{"format", "pt"}}), "'b'", "never written");
}

TEST_CASE("stream export: quantize writes the same files streamed and buffered") {
  test::TempDir tmp;
  DemoShape shape;
  shape.layers = 2;
  shape.experts = 4;
  struct Case { std::string name, rules; uint64_t max_shard; };
  const std::vector<Case> cases = {
      {"nvfp4 experts", "  - roles: [experts]\n    format: nvfp4\n  - roles: [attention, dense_mlp, shared_experts, other]\n    enable: false\n", 5ull << 30},
      {"mixed, small shards", kMixedRules, 64 << 10}};
  // (ModelOpt FP8 needs calibration, W8A8 only: tests/export/test_quantize_calib.cpp exports it.)
  for (bool fused : {false, true})
    for (const auto& c : cases) {
      DYNAMIC_SECTION((fused ? "fused " : "per-expert ") << c.name) {
        const std::string src = tmp.path + (fused ? "/fused" : "/flat");
        if (!fs::exists(src)) write_demo_checkpoint(src, fused, shape, 11, false);
        test::write_file(tmp.path + "/r.yaml", "export: modelopt\nweight_only: true\nrules:\n" + c.rules);
        // The layout is known before quantizing (so quantize streams)...
        const ModelConfig cfg = load_config(src);
        auto ck = Checkpoint::open(src);
        const SiteMap map = map_sites(plugin_for(cfg), cfg, *ck);
        const Plan plan = make_plan(load_recipe(tmp.path + "/r.yaml"), map.sites, false);
        std::string why;
        const auto planned = plan_export_layout(*ck, export_order(*ck, plan), *export_layout("modelopt").writer, {}, &why);
        REQUIRE(planned.has_value());
        // ...and both paths write the same bytes.
        QuantizeOptions o;
        o.model = src;
        o.recipe = tmp.path + "/r.yaml";
        o.overwrite = true;
        o.max_shard_bytes = c.max_shard;
        o.out = tmp.path + "/streamed";
        quantize_checkpoint(o);
        o.stream_export = false;
        o.out = tmp.path + "/buffered";
        quantize_checkpoint(o);
        check_same_files(o.out, tmp.path + "/streamed");
        // The planned tensors are the export's: same tensors, dtypes and shapes.
        auto out = Checkpoint::open(tmp.path + "/streamed");
        CHECK(out->names().size() == planned->size());
        for (const auto& s : *planned) {
          INFO(s.name);
          REQUIRE(out->has(s.name));
          CHECK(out->info(s.name).dtype == s.dtype);
          CHECK(out->info(s.name).shape == s.shape);
        }
        if (c.max_shard < (1 << 20)) CHECK(fs::exists(tmp.path + "/streamed/model.safetensors.index.json"));
      }
    }
}

TEST_CASE("stream export: writers that lay out only from values stay buffered, and say so") {
  test::TempDir tmp;
  DemoShape shape;
  shape.layers = 2;
  shape.experts = 4;
  write_demo_checkpoint(tmp.path + "/m", false, shape, 5, false);
  test::write_file(tmp.path + "/r.yaml", "export: bnb\nweight_only: true\nrules:\n  - roles: [experts]\n    format: nf4\n"
                                         "  - roles: [attention, dense_mlp, shared_experts, other]\n    enable: false\n");
  const ModelConfig cfg = load_config(tmp.path + "/m");
  auto ck = Checkpoint::open(tmp.path + "/m");
  const SiteMap map = map_sites(plugin_for(cfg), cfg, *ck);
  const Plan plan = make_plan(load_recipe(tmp.path + "/r.yaml"), map.sites, false);
  for (const char* w : {"bnb", "compressed-tensors"}) {
    std::string why;
    CHECK_FALSE(plan_export_layout(*ck, export_order(*ck, plan), *export_layout(w).writer, {}, &why).has_value());
    CHECK_THAT(why, Catch::Matchers::ContainsSubstring(std::string("export writer ") + w));
  }
}
