#pragma once
// Shared by the export tests: edit an export in place to make it broken on purpose.
#include <ATen/ATen.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "export/shard_writer.h"
#include "model/demo_checkpoint.h"
#include "app/run/quantize.h"
#include "tensor/aten_view.h"
#include "io/checkpoint.h"
#include "io/safetensors_writer.h"
#include "test_util.h"

namespace moeq::test {

// The demo checkpoint (2 layers, `experts` experts, per-expert or fused experts; written once
// per TempDir) quantized weight-only into `export_name` with the recipe rules; returns the
// export dir (`<src>-<suffix>`).
inline std::string quantize_demo_export(const TempDir& tmp, bool fused, const std::string& export_name,
                                        const std::string& rules, const std::string& suffix, int64_t experts = 4) {
  DemoShape shape;
  shape.layers = 2;
  shape.experts = experts;
  const std::string src = tmp.path + (fused ? "/fused" : "/flat");
  if (!std::filesystem::exists(src)) write_demo_checkpoint(src, fused, shape, 7, false);
  write_file(tmp.path + "/r.yaml", "export: " + export_name + "\nweight_only: true\nrules:\n" + rules);
  QuantizeOptions o;
  o.model = src;
  o.recipe = tmp.path + "/r.yaml";
  o.out = src + "-" + suffix;
  o.overwrite = true;
  quantize_checkpoint(o);
  return o.out;
}

// Rewrites a single-shard export, letting `edit` drop (return false) or change tensors.
inline void rewrite_export(const std::string& dir, const std::function<bool(const std::string&, at::Tensor&)>& edit) {
  auto ck = Checkpoint::open(dir);
  std::vector<std::pair<std::string, at::Tensor>> keep;
  for (const auto& n : ck->names()) {
    at::Tensor t = tensor_view(*ck, n).clone();
    if (edit(n, t)) keep.emplace_back(n, t);
  }
  ck.reset();
  std::filesystem::remove(dir + "/model.safetensors");
  std::vector<TensorSpec> specs;
  for (auto& [n, t] : keep) {
    TensorSpec s{n, DType::U8, t.sizes().vec()};
    REQUIRE(parse_dtype(safetensors_dtype(t.scalar_type()), &s.dtype));
    specs.push_back(s);
  }
  SafetensorsWriter w(dir, specs, ~0ull);
  for (auto& [n, t] : keep) w.write(n, t.data_ptr(), t.nbytes());
  w.finish();
}

}  // namespace moeq::test
