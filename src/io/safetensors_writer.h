#pragma once
// Writes a (possibly sharded) safetensors checkpoint. The layout is planned up front from
// the tensor specs (names, dtypes, shapes), so tensor bytes can then be streamed in any
// order, from several threads, without holding the checkpoint in memory.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/dtype.h"

namespace moeq {

struct TensorSpec {
  std::string name;
  DType dtype = DType::U8;
  std::vector<int64_t> shape;
  uint64_t nbytes() const;
};

class SafetensorsWriter {
 public:
  // Tensors go to shards in the given order; a new shard starts when the current one would
  // exceed max_shard_bytes (a single larger tensor gets a shard of its own). One shard is
  // named `model.safetensors`; several are `model-0000K-of-0000N.safetensors` with a
  // `model.safetensors.index.json`. Files are created in `dir` (which must exist).
  SafetensorsWriter(std::string dir, std::vector<TensorSpec> specs, uint64_t max_shard_bytes,
                    std::map<std::string, std::string> metadata = {});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Writes one tensor's bytes; nbytes must match its spec. Thread-safe.
  void write(const std::string& name, const void* data, uint64_t nbytes);
  // Checks that every tensor was written, writes the index, flushes and closes the files.
  void finish();
  // File names (relative to dir) in shard order.
  std::vector<std::string> files() const;

 private:
  struct Slot { size_t shard; uint64_t offset; uint64_t nbytes; bool written = false; };
  struct Shard { std::string file; int fd = -1; uint64_t data_start = 0; uint64_t bytes = 0; };
  std::string dir_;
  std::vector<TensorSpec> specs_;
  std::unordered_map<std::string, Slot> slots_;
  std::vector<Shard> shards_;
  std::mutex mu_;
  bool finished_ = false;
};

}  // namespace moeq
