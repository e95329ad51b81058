// The embedded demo checkpoint: deterministic, and both layouts expose identical experts.
#include <ATen/ATen.h>

#include "tensor/aten_view.h"
#include "io/safetensors_writer.h"
#include "model/demo_checkpoint.h"
#include "model/plugin.h"
#include "test_util.h"

using namespace moeq;

TEST_CASE("demo checkpoint: fused and per-expert layouts hold the same experts; same seed, same bytes") {
  test::TempDir tmp;
  DemoShape shape;
  shape.layers = 2;
  shape.experts = 4;
  write_demo_checkpoint(tmp.path + "/flat", false, shape, 7, false);
  write_demo_checkpoint(tmp.path + "/fused", true, shape, 7, false);
  write_demo_checkpoint(tmp.path + "/flat2", false, shape, 7, false);
  CHECK(test::read_file(tmp.path + "/flat/model.safetensors") == test::read_file(tmp.path + "/flat2/model.safetensors"));

  auto open = [&](const std::string& d) {
    auto cfg = load_config(d);
    auto ck = Checkpoint::open(d);
    return std::make_pair(ck, map_sites(plugin_for(cfg), cfg, *ck));
  };
  auto [flat_ck, flat] = open(tmp.path + "/flat");
  auto [fused_ck, fused] = open(tmp.path + "/fused");
  CHECK(flat.expert_layout == "per-expert 2D");
  CHECK(fused.expert_layout == "fused 3D");
  CHECK(flat.unclaimed.empty());
  CHECK(fused.unclaimed.empty());
  REQUIRE(flat.sites.size() == fused.sites.size());
  REQUIRE(flat.sites.size() == 2 * (4 + 1 + 4 * 3) + 2);  // attn q/k/v/o, router, experts; embed, lm_head
  for (size_t i = 0; i < flat.sites.size(); ++i) {
    INFO(flat.sites[i].name);
    REQUIRE(flat.sites[i].name == fused.sites[i].name);
    CHECK(at::equal(site_weight(*flat_ck, flat.sites[i]), site_weight(*fused_ck, fused.sites[i])));
  }
  CHECK(flat_ck->total_bytes() == fused_ck->total_bytes());
}

TEST_CASE("plugins: a tensor no rule claims is reported, a fused tensor of the wrong shape is an error") {
  test::TempDir tmp;
  DemoShape shape;
  shape.layers = 1;
  shape.experts = 2;
  write_demo_checkpoint(tmp.path + "/m", true, shape, 1, false);
  // Add a stray tensor and a malformed expert stack in a second shard.
  auto add_shard = [&](const std::string& name, std::vector<int64_t> dims) {
    std::filesystem::remove(tmp.path + "/m/extra.safetensors");
    SafetensorsWriter w(tmp.path + "/m", {{name, DType::BF16, dims}}, 1ull << 30);
    std::vector<uint16_t> zeros(TensorSpec{name, DType::BF16, dims}.nbytes() / 2);
    w.write(name, zeros.data(), zeros.size() * 2);
    w.finish();
    std::filesystem::rename(tmp.path + "/m/model.safetensors", tmp.path + "/m/extra.safetensors");
  };
  std::filesystem::rename(tmp.path + "/m/model.safetensors", tmp.path + "/m/base.safetensors");
  add_shard("model.layers.0.mlp.mystery.weight", {4, 4});
  auto cfg = load_config(tmp.path + "/m");
  {
    auto ck = Checkpoint::open(tmp.path + "/m");
    auto map = map_sites(plugin_for(cfg), cfg, *ck);
    REQUIRE(map.unclaimed == std::vector<std::string>{"model.layers.0.mlp.mystery.weight"});
  }
  add_shard("model.layers.1.mlp.experts.gate_up_proj", {2, 7, 8});
  auto ck = Checkpoint::open(tmp.path + "/m");
  REQUIRE_ERROR_MENTIONS(map_sites(plugin_for(cfg), cfg, *ck), "model.layers.1.mlp.experts.gate_up_proj", "[2, 7, 8]");
}
