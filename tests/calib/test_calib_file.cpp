// calib.h5: HDF5 round trip, atomic writes, damaged and foreign files, the model
// fingerprint and the refusal of a file made for another model.
#include <filesystem>

#include "calib/calib_file.h"
#include "calib/coverage.h"
#include "calib/h5.h"
#include "model/demo_checkpoint.h"
#include "test_util.h"

using namespace moeq;
namespace fs = std::filesystem;

namespace {

CalibData sample() {
  CalibData d;
  d.model_fingerprint = "0123456789abcdef";
  d.model_summary = "qwen3_moe, 2 layers, 4 experts (top-2), hidden 64, 40 tensors";
  d.model_dir = "/models/tiny qwen";
  d.data_description = "c4.jsonl: 512 samples x 512 tokens (\"text\", tokenizer.json)";
  d.tool_version = "moeq 0.1.0";
  d.device = "cuda";
  d.dtype = "bf16";
  d.created_utc = "2026-11-27T08:00:00Z";
  d.samples = 512;
  d.seq_len = 512;
  d.tokens = 262144;
  d.all_experts_stats = true;
  d.seconds = 12.5;
  d.peak_device_bytes = 123456789012;
  d.fallback_rule = "max of the layer";
  d.sites.push_back({"layers.0.attention.q", "model.layers.0.self_attn.q_proj", 0, -1, 3.5f, false, {1.5f, 3.5f}});
  d.sites.push_back({"layers.0.experts.0.gate", "model.layers.0.mlp.experts.0.gate_proj", 0, 0, 1e-30f, false, {}});
  d.sites.push_back({"layers.1.experts.3.down", "model.layers.1.mlp.experts.3.down_proj", 1, 3, 65504.0f, true, {}});
  d.layers.push_back({0, {5, 0, 7, 1}, {5, 0, 7, 1}, {2.5f, 0, 3.25f, 0.5f}});
  d.layers.push_back({10, {}, {1, 2}, {0.5f, 1.0f}});  // sorted after layer 1 as a number, not as text
  d.layers.push_back({1, {3, 3}, {3, 3}, {1, 1}});
  d.unobserved = {"layers.0.router", "lm_head"};
  return d;
}

}  // namespace

TEST_CASE("calib.h5: every field survives a round trip", "[calib]") {
  test::TempDir tmp;
  const std::string path = tmp.path + "/calib.h5";
  const CalibData d = sample();
  write_calib_file(path, d);
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(tmp.path)) files.push_back(e.path().filename());
  CHECK(files == std::vector<std::string>{"calib.h5"});  // no temporary left behind

  const CalibData r = read_calib_file(path);
  CHECK(r.model_fingerprint == d.model_fingerprint);
  CHECK(r.model_summary == d.model_summary);
  CHECK(r.model_dir == d.model_dir);
  CHECK(r.data_description == d.data_description);
  CHECK(r.tool_version == d.tool_version);
  CHECK(r.device == d.device);
  CHECK(r.dtype == d.dtype);
  CHECK(r.created_utc == d.created_utc);
  CHECK(r.samples == 512);
  CHECK(r.seq_len == 512);
  CHECK(r.tokens == 262144);
  CHECK(r.all_experts_stats);
  CHECK(r.seconds == 12.5);
  CHECK(r.peak_device_bytes == 123456789012);
  CHECK(r.fallback_rule == d.fallback_rule);
  REQUIRE(r.sites.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(r.sites[i].name == d.sites[i].name);
    CHECK(r.sites[i].module == d.sites[i].module);
    CHECK(r.sites[i].layer == d.sites[i].layer);
    CHECK(r.sites[i].expert == d.sites[i].expert);
    CHECK(r.sites[i].amax == d.sites[i].amax);  // float32 stored exactly
    CHECK(r.sites[i].fallback == d.sites[i].fallback);
    CHECK(r.sites[i].channel_amax == d.sites[i].channel_amax);
  }
  REQUIRE(r.layers.size() == 3);
  CHECK(r.layers[0].layer == 0);
  CHECK(r.layers[1].layer == 1);
  CHECK(r.layers[2].layer == 10);
  CHECK(r.layers[0].tokens_per_expert == d.layers[0].tokens_per_expert);
  CHECK(r.layers[0].router_load == d.layers[0].router_load);
  CHECK(r.layers[0].router_weight == d.layers[0].router_weight);
  CHECK(r.layers[2].tokens_per_expert.empty());
  CHECK(r.unobserved == d.unobserved);
  REQUIRE(r.fallbacks().size() == 1);
  CHECK(r.fallbacks()[0]->name == "layers.1.experts.3.down");
  CHECK(r.find("layers.0.attention.q")->amax == 3.5f);

  // Coverage per layer: min / median / max and the experts without tokens.
  const auto cov = expert_coverage(r);
  REQUIRE(cov.size() == 2);
  CHECK(cov[0].layer == 0);
  CHECK(cov[0].min == 0);
  CHECK(cov[0].median == 5);
  CHECK(cov[0].max == 7);
  CHECK(cov[0].zero_token_experts == std::vector<int64_t>{1});
  CHECK(coverage_line(cov[0]) == "layer 0: 4 experts, tokens per expert min 0 / median 5 / max 7, 1 with none (1)");
  CHECK(coverage_line(cov[1]) == "layer 1: 2 experts, tokens per expert min 3 / median 3 / max 3, none without tokens");
}

TEST_CASE("calib.h5: an empty file (no sites, no layers) round-trips", "[calib]") {
  test::TempDir tmp;
  CalibData d;
  write_calib_file(tmp.path + "/c.h5", d);
  const CalibData r = read_calib_file(tmp.path + "/c.h5");
  CHECK(r.sites.empty());
  CHECK(r.layers.empty());
  CHECK(r.unobserved.empty());
  CHECK(r.data_description.empty());
}

TEST_CASE("calib.h5: missing, foreign, damaged and newer files are refused by name", "[calib]") {
  test::TempDir tmp;
  REQUIRE_ERROR_MENTIONS(read_calib_file(tmp.path + "/nope.h5"), "nope.h5", "cannot open");
  test::write_file(tmp.path + "/text.h5", "not hdf5 at all");
  REQUIRE_ERROR_MENTIONS(read_calib_file(tmp.path + "/text.h5"), "text.h5", "not an HDF5 file");
  REQUIRE_ERROR_MENTIONS(write_calib_file(tmp.path + "/no/such/dir/c.h5", sample()), "no/such/dir/c.h5");
  {
    h5::File f = h5::File::create(tmp.path + "/other.h5");  // HDF5, but not ours
    f.attr("/", "format", std::string("something-else"));
  }
  REQUIRE_ERROR_MENTIONS(read_calib_file(tmp.path + "/other.h5"), "other.h5", "not a moeq calibration file");
  {
    h5::File f = h5::File::create(tmp.path + "/newer.h5");
    f.attr("/", "format", std::string("moeq-calib"));
    f.attr("/", "format_version", int64_t{99});
  }
  REQUIRE_ERROR_MENTIONS(read_calib_file(tmp.path + "/newer.h5"), "newer.h5", "version 99");
  {
    h5::File f = h5::File::create(tmp.path + "/partial.h5");
    f.attr("/", "format", std::string("moeq-calib"));
    f.attr("/", "format_version", int64_t{1});
  }
  REQUIRE_ERROR_MENTIONS(read_calib_file(tmp.path + "/partial.h5"), "partial.h5", "tool_version", "missing");
}

TEST_CASE("calib.h5: the fingerprint tells models apart and a foreign file is refused naming both", "[calib]") {
  test::TempDir tmp;
  DemoShape shape;
  shape.layers = 1;
  shape.experts = 4;
  shape.hidden = 64;
  shape.expert_inter = 32;
  write_demo_checkpoint(tmp.path + "/a", false, shape, 1, false);
  write_demo_checkpoint(tmp.path + "/a2", false, shape, 2, false);  // other values, same architecture
  shape.experts = 8;
  write_demo_checkpoint(tmp.path + "/b", false, shape, 1, false);
  auto fp = [&](const std::string& dir) { return model_fingerprint(load_config(dir), *Checkpoint::open(dir)); };
  CHECK(fp(tmp.path + "/a").size() == 16);
  CHECK(fp(tmp.path + "/a") == fp(tmp.path + "/a"));
  CHECK(fp(tmp.path + "/a") == fp(tmp.path + "/a2"));  // values are not hashed (documented)
  CHECK(fp(tmp.path + "/a") != fp(tmp.path + "/b"));

  CalibData d;
  const ModelConfig ca = load_config(tmp.path + "/a");
  auto cka = Checkpoint::open(tmp.path + "/a");
  d.model_fingerprint = model_fingerprint(ca, *cka);
  d.model_summary = model_summary(ca, *cka);
  d.model_dir = tmp.path + "/a";
  require_calib_matches(d, "calib.h5", ca, *cka, tmp.path + "/a");
  const ModelConfig cb = load_config(tmp.path + "/b");
  auto ckb = Checkpoint::open(tmp.path + "/b");
  const std::string dir_a = tmp.path + "/a", dir_b = tmp.path + "/b";
  REQUIRE_ERROR_MENTIONS(require_calib_matches(d, "calib.h5", cb, *ckb, dir_b), "calib.h5", "another model", dir_a.c_str(),
                         dir_b.c_str(), "4 experts", "8 experts", d.model_fingerprint.c_str());
}
