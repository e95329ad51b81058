#pragma once
#include <cstdint>
// Writes named tensors into safetensors shards of bounded size, in one of two modes:
// - buffered (default): tensors are held until a shard is full, then that shard is written,
//   so memory holds at most one shard;
// - streaming (stream() first): every tensor is declared up front, the shards are created
//   at full size at once, and each tensor is written at its offset as soon as it is added,
//   so the writes overlap the caller's work and nothing is held. Same files, byte for byte.
// Shards are renamed to model-0000K-of-0000N.safetensors (or model.safetensors) with an
// index at finish(). Write into a temporary directory (AtomicDir) for atomic exports.
#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "export/tensor_sink.h"

namespace moeq {

class ShardWriter : public TensorSink {
 public:
  ShardWriter(std::string dir, uint64_t max_shard_bytes);
  ~ShardWriter() override;
  // Streaming mode: `planned` lists every tensor in the order the buffered mode would be given
  // them (which decides the shards and offsets); `metadata` is what finish() will be passed.
  // Afterwards add()/add_raw() may come in any order, from several threads; a tensor not
  // planned, or with another dtype or shape, is an error.
  void stream(const std::vector<TensorSpec>& planned, const std::map<std::string, std::string>& metadata);
  bool streaming() const { return streaming_; }
  // t is written as stored (CPU, contiguous copy if needed). Names must be unique.
  void add(const std::string& name, const at::Tensor& t) override;
  // Raw bytes with a safetensors dtype name ("BF16", ...) and shape (copy-through).
  void add_raw(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape,
               const uint8_t* data, uint64_t nbytes);
  void finish(const std::map<std::string, std::string>& metadata = {{"format", "pt"}});
  uint64_t bytes_written() const { return total_; }
  // Output tensor name -> shard file, after finish().
  const std::map<std::string, std::string>& weight_map() const { return weight_map_; }

 private:
  struct Pending { std::string name, dtype; std::vector<int64_t> shape; at::Tensor keep; const uint8_t* data; uint64_t nbytes; };
  struct Planned { size_t shard; TensorSpec spec; };
  void flush();
  void mark_seen(const std::string& name);
  std::string shard_dir(size_t k) const { return dir_ + "/.shard-" + std::to_string(k); }
  std::string dir_;
  uint64_t max_;
  std::vector<Pending> pending_;
  uint64_t pending_bytes_ = 0, total_ = 0;
  std::vector<std::vector<std::string>> shard_names_;  // tensor names per shard
  std::map<std::string, std::string> weight_map_;
  // Shards before the last get this (finish() sets the last shard's).
  std::map<std::string, std::string> metadata_{{"format", "pt"}};
  std::map<std::string, bool> seen_;
  std::mutex seen_mu_;
  // Streaming mode: one single-shard writer per planned shard.
  std::vector<std::unique_ptr<SafetensorsWriter>> streams_;
  std::map<std::string, Planned> planned_;
  std::map<std::string, std::string> stream_metadata_;
  bool streaming_ = false;
};

const char* safetensors_dtype(at::ScalarType t);

}  // namespace moeq
