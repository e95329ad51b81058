#include "export/shard_writer.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors_writer.h"
#include "io/text_file.h"

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

void LayoutRecorder::add(const std::string& name, const at::Tensor& t) {
  TensorSpec s;
  s.name = name;
  if (!parse_dtype(safetensors_dtype(t.scalar_type()), &s.dtype)) throw Error("export: bad dtype for " + name);
  s.shape = t.sizes().vec();
  specs_.push_back(std::move(s));
}

namespace {
std::string shape_text(const std::vector<int64_t>& shape) {
  std::string t = "[";
  for (size_t i = 0; i < shape.size(); ++i) t += (i ? ", " : "") + std::to_string(shape[i]);
  return t + "]";
}
}  // namespace

ShardWriter::ShardWriter(std::string dir, uint64_t max_shard_bytes) : dir_(std::move(dir)), max_(max_shard_bytes) {}

ShardWriter::~ShardWriter() = default;

void ShardWriter::stream(const std::vector<TensorSpec>& planned, const std::map<std::string, std::string>& metadata) {
  if (streaming() || !pending_.empty() || !shard_names_.empty())
    throw Error("export: ShardWriter::stream must come first, once");
  // The buffered mode's cut: a shard closes when the next tensor would take it past max_.
  std::vector<std::vector<TensorSpec>> groups;
  uint64_t bytes = 0;
  for (const auto& s : planned) {
    if (planned_.count(s.name)) throw Error("export: tensor '" + s.name + "' planned twice");
    if (groups.empty() || (!groups.back().empty() && bytes + s.nbytes() > max_)) {
      groups.emplace_back();
      bytes = 0;
    }
    planned_[s.name] = Planned{groups.size() - 1, s};
    groups.back().push_back(s);
    bytes += s.nbytes();
  }
  stream_metadata_ = metadata;
  streaming_ = true;
  for (size_t k = 0; k < groups.size(); ++k) {
    std::filesystem::create_directories(shard_dir(k));
    streams_.push_back(std::make_unique<SafetensorsWriter>(shard_dir(k), groups[k], ~0ull,
                                                           k + 1 == groups.size() ? metadata : metadata_));
    shard_names_.emplace_back();
    for (const auto& s : groups[k]) {
      shard_names_.back().push_back(s.name);
      total_ += s.nbytes();
    }
  }
}

void ShardWriter::mark_seen(const std::string& name) {
  std::lock_guard<std::mutex> lk(seen_mu_);
  if (seen_.count(name)) throw Error("export: tensor '" + name + "' written twice");
  seen_[name] = true;
}

void ShardWriter::add(const std::string& name, const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU).contiguous();
  add_raw(name, safetensors_dtype(c.scalar_type()), c.sizes().vec(), static_cast<const uint8_t*>(c.data_ptr()),
          c.nbytes());
  if (!streaming()) pending_.back().keep = c;  // streaming wrote it already
}

void ShardWriter::add_raw(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape,
                          const uint8_t* data, uint64_t nbytes) {
  if (streaming()) {
    auto it = planned_.find(name);
    if (it == planned_.end()) throw Error("export: tensor '" + name + "' is not among the planned tensors (moeq bug)");
    const TensorSpec& s = it->second.spec;
    if (dtype != dtype_name(s.dtype) || shape != s.shape)
      throw Error("export: tensor '" + name + "' is " + dtype + " " + shape_text(shape) + ", planned " +
                  dtype_name(s.dtype) + " " + shape_text(s.shape) + " (a format's part_specs disagree with its output: moeq bug)");
    mark_seen(name);
    streams_[it->second.shard]->write(name, data, nbytes);
    return;
  }
  mark_seen(name);
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
  const std::string tmp = shard_dir(shard_names_.size());
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
  if (streaming()) {
    if (metadata != stream_metadata_) throw Error("export: finish() metadata differs from the streamed shards' (moeq bug)");
    for (auto& w : streams_) w->finish();  // throws naming a tensor never written
    streams_.clear();
    streaming_ = false;
  } else {
    metadata_ = metadata;
    flush();
  }
  const size_t n = shard_names_.size();
  uint64_t total = 0;
  for (size_t k = 0; k < n; ++k) {
    char buf[64];
    if (n == 1) std::snprintf(buf, sizeof buf, "model.safetensors");
    else std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", k + 1, n);
    const std::string tmp = shard_dir(k);
    std::filesystem::rename(tmp + "/model.safetensors", dir_ + "/" + buf);
    std::filesystem::remove(tmp);
    for (const auto& name : shard_names_[k]) weight_map_[name] = buf;
  }
  total = total_;
  if (n > 1) {
    nlohmann::ordered_json idx;
    idx["metadata"] = {{"total_size", total}};
    idx["weight_map"] = weight_map_;
    write_text_file(dir_ + "/model.safetensors.index.json", idx.dump(2) + "\n");
  }
}

}  // namespace moeq
