#include "export/shard_writer.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors_writer.h"

namespace moeq {

const char* safetensors_dtype(at::ScalarType t) {
  switch (t) {
    case at::kBool: return "BOOL";
    case at::kByte: return "U8";
    case at::kChar: return "I8";
    case at::kShort: return "I16";
    case at::kInt: return "I32";
    case at::kLong: return "I64";
    case at::kHalf: return "F16";
    case at::kBFloat16: return "BF16";
    case at::kFloat: return "F32";
    case at::kDouble: return "F64";
    case at::kFloat8_e4m3fn: return "F8_E4M3";
    case at::kFloat8_e5m2: return "F8_E5M2";
    default: throw Error(std::string("no safetensors dtype for ") + c10::toString(t));
  }
}

ShardWriter::ShardWriter(std::string dir, uint64_t max_shard_bytes) : dir_(std::move(dir)), max_(max_shard_bytes) {}

void ShardWriter::add(const std::string& name, const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU).contiguous();
  add_raw(name, safetensors_dtype(c.scalar_type()), c.sizes().vec(), static_cast<const uint8_t*>(c.data_ptr()),
          c.nbytes());
  pending_.back().keep = c;
}

void ShardWriter::add_raw(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape,
                          const uint8_t* data, uint64_t nbytes) {
  if (seen_.count(name)) throw Error("export: tensor '" + name + "' written twice");
  seen_[name] = true;
  if (!pending_.empty() && pending_bytes_ + nbytes > max_) flush();
  pending_.push_back(Pending{name, dtype, shape, at::Tensor(), data, nbytes});
  pending_bytes_ += nbytes;
}

void ShardWriter::flush() {
  if (pending_.empty()) return;
  std::vector<TensorSpec> specs;
  for (const auto& p : pending_) {
    TensorSpec s;
    s.name = p.name;
    if (!parse_dtype(p.dtype, &s.dtype)) throw Error("export: bad dtype " + p.dtype);
    s.shape = p.shape;
    specs.push_back(s);
  }
  const std::string tmp = dir_ + "/.shard-" + std::to_string(shard_names_.size());
  std::filesystem::create_directories(tmp);
  {
    SafetensorsWriter w(tmp, specs, ~0ull, metadata_);
    // Tensors land at planned offsets, so several threads can copy them into the file.
    at::parallel_for(0, static_cast<int64_t>(pending_.size()), 1, [&](int64_t a, int64_t z) {
      for (int64_t i = a; i < z; ++i) w.write(pending_[i].name, pending_[i].data, pending_[i].nbytes);
    });
    w.finish();
  }
  shard_names_.emplace_back();
  for (const auto& p : pending_) shard_names_.back().push_back(p.name);
  total_ += pending_bytes_;
  pending_.clear();
  pending_bytes_ = 0;
}

void ShardWriter::finish(const std::map<std::string, std::string>& metadata) {
  metadata_ = metadata;
  flush();
  const size_t n = shard_names_.size();
  uint64_t total = 0;
  for (size_t k = 0; k < n; ++k) {
    char buf[64];
    if (n == 1) std::snprintf(buf, sizeof buf, "model.safetensors");
    else std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", k + 1, n);
    const std::string tmp = dir_ + "/.shard-" + std::to_string(k);
    std::filesystem::rename(tmp + "/model.safetensors", dir_ + "/" + buf);
    std::filesystem::remove(tmp);
    for (const auto& name : shard_names_[k]) weight_map_[name] = buf;
  }
  total = total_;
  if (n > 1) {
    nlohmann::ordered_json idx;
    idx["metadata"] = {{"total_size", total}};
    idx["weight_map"] = weight_map_;
    std::ofstream(dir_ + "/model.safetensors.index.json") << idx.dump(2) << "\n";
  }
}

}  // namespace moeq
