// Errors raised while the pipeline processes a site name the site, the checkpoint tensor
// (expert index of a fused stack) and the shard file; a checkpoint whose experts the
// plugin cannot see, or a recipe role that quantizes nothing, is an error, not an export.
#include <ATen/ATen.h>

#include <filesystem>
#include <functional>

#include "app/compare/compare.h"
#include "tensor/aten_view.h"
#include "io/checkpoint.h"
#include "io/safetensors_writer.h"
#include "export/shard_writer.h"
#include "model/demo_checkpoint.h"
#include "app/run/quantize.h"
#include "test_util.h"

using namespace moeq;
namespace fs = std::filesystem;

namespace {

// Rewrites a single-shard checkpoint: `edit` may change a tensor and its name.
void rewrite(const std::string& dir, const std::function<void(std::string&, at::Tensor&)>& edit) {
  auto ck = Checkpoint::open(dir);
  std::vector<std::pair<std::string, at::Tensor>> keep;
  for (const auto& n : ck->names()) {
    std::string name = n;
    at::Tensor t = tensor_view(*ck, n).clone();
    edit(name, t);
    keep.emplace_back(name, t);
  }
  ck.reset();
  fs::remove(dir + "/model.safetensors");
  std::vector<TensorSpec> specs;
  for (auto& [n, t] : keep) {
    TensorSpec s{n, DType::U8, t.sizes().vec()};
    REQUIRE(parse_dtype(safetensors_dtype(t.scalar_type()), &s.dtype));
    specs.push_back(s);
  }
  SafetensorsWriter w(dir, specs, ~0ull, {{"format", "pt"}});
  for (auto& [n, t] : keep) w.write(n, t.data_ptr(), t.nbytes());
  w.finish();
}

std::string demo(const test::TempDir& tmp) {
  DemoShape shape;
  shape.layers = 2;
  shape.experts = 4;
  const std::string src = tmp.path + "/fused";
  write_demo_checkpoint(src, /*fused=*/true, shape, 3, false);
  REQUIRE(Checkpoint::open(src)->files().size() == 1);
  return src;
}

}  // namespace

TEST_CASE("a NaN in one expert of a fused gate_up_proj: the error names site, tensor, expert and file") {
  test::TempDir tmp;
  const std::string src = demo(tmp);
  rewrite(src, [](std::string& name, at::Tensor& t) {
    if (name == "model.layers.1.mlp.experts.gate_up_proj") t[2][5][7].fill_(NAN);  // expert 2, a gate row
  });
  test::write_file(tmp.path + "/r.yaml", "weight_only: true\nrules:\n  - roles: [experts]\n    format: nvfp4\n");
  QuantizeOptions o;
  o.model = src;
  o.recipe = tmp.path + "/r.yaml";
  o.out = tmp.path + "/q";
  const std::string file = src + "/model.safetensors";
  REQUIRE_ERROR_MENTIONS(quantize_checkpoint(o), "layers.1.experts.2.gate (tensor model.layers.1.mlp.experts.gate_up_proj, expert 2",
                         file.c_str(), "NaN");
  CHECK_FALSE(fs::exists(o.out));
  // compare quantizes through the same jobs: the same place.
  CompareOptions c;
  c.model = src;
  c.formats = {"nvfp4"};
  REQUIRE_ERROR_MENTIONS(run_compare(c), "layers.1.experts.2.gate (tensor model.layers.1.mlp.experts.gate_up_proj, expert 2",
                         file.c_str());
}

TEST_CASE("routed experts declared but no expert weight found: an error, not `experts quantized: 0 / 0`") {
  test::TempDir tmp;
  const std::string src = demo(tmp);
  // An expert storage the plugin does not know (as gpt-oss's MXFP4 blocks were to an older one).
  rewrite(src, [](std::string& name, at::Tensor&) {
    const auto at = name.find("mlp.experts.");
    if (at != std::string::npos) name = name.substr(0, at) + "mlp.experts_packed." + name.substr(at + 12);
  });
  test::write_file(tmp.path + "/r.yaml", "weight_only: true\nrules:\n  - roles: [experts]\n    format: nvfp4\n");
  QuantizeOptions o;
  o.model = src;
  o.recipe = tmp.path + "/r.yaml";
  o.out = tmp.path + "/q";
  REQUIRE_ERROR_MENTIONS(quantize_checkpoint(o), src.c_str(), "declares 4 routed experts", "found no expert weight",
                         "first: model.layers.0.mlp.experts_packed.");
  CHECK_FALSE(fs::exists(o.out));
}

TEST_CASE("a recipe rule whose roles quantize nothing is an error naming the rule and its line") {
  test::TempDir tmp;
  const std::string src = demo(tmp);
  test::write_file(tmp.path + "/r.yaml",
                   "weight_only: true\nrules:\n  - roles: [experts]\n    format: nvfp4\n  - roles: [shared_experts]\n    format: fp8\n");
  QuantizeOptions o;
  o.model = src;
  o.recipe = tmp.path + "/r.yaml";
  o.out = tmp.path + "/q";
  REQUIRE_ERROR_MENTIONS(quantize_checkpoint(o), "r.yaml: rule 2 (line 5)", "[shared_experts]", "quantizes no site",
                         "the model has none");
  // Every site of the role decided otherwise by a later rule: the same.
  test::write_file(tmp.path + "/r.yaml",
                   "weight_only: true\nrules:\n  - roles: [experts, attention]\n    format: nvfp4\n  - roles: [attention]\n    format: fp8\n"
                   "  - roles: [attention]\n    enable: false\n");
  REQUIRE_ERROR_MENTIONS(quantize_checkpoint(o), "rule 2 (line 5) names roles [attention]", "every one decided otherwise");
  CHECK_FALSE(fs::exists(o.out));
}
