#pragma once
#include <cstdint>
// Streams named tensors into safetensors shards of bounded size: tensors are buffered
// until a shard is full, then that shard is written, so memory holds at most one shard.
// Shards are renamed to model-0000K-of-0000N.safetensors (or model.safetensors) with an
// index at finish(). Write into a temporary directory (AtomicDir) for atomic exports.
#include <ATen/ATen.h>

#include <map>
#include <string>
#include <vector>

namespace moeq {

class ShardWriter {
 public:
  ShardWriter(std::string dir, uint64_t max_shard_bytes);
  // t is written as stored (CPU, contiguous copy if needed). Names must be unique.
  void add(const std::string& name, const at::Tensor& t);
  // Raw bytes with a safetensors dtype name ("BF16", ...) and shape (copy-through).
  void add_raw(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape,
               const uint8_t* data, uint64_t nbytes);
  void finish(const std::map<std::string, std::string>& metadata = {{"format", "pt"}});
  uint64_t bytes_written() const { return total_; }
  // Output tensor name -> shard file, after finish().
  const std::map<std::string, std::string>& weight_map() const { return weight_map_; }

 private:
  struct Pending { std::string name, dtype; std::vector<int64_t> shape; at::Tensor keep; const uint8_t* data; uint64_t nbytes; };
  void flush();
  std::string dir_;
  uint64_t max_;
  std::vector<Pending> pending_;
  uint64_t pending_bytes_ = 0, total_ = 0;
  std::vector<std::vector<std::string>> shard_names_;  // tensor names per written shard
  std::map<std::string, std::string> weight_map_;
  std::map<std::string, std::string> metadata_{{"format", "pt"}};
  std::map<std::string, bool> seen_;
};

const char* safetensors_dtype(at::ScalarType t);

}  // namespace moeq
