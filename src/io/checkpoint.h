#pragma once
#include <cstdint>
// A Hugging Face checkpoint directory: one or more safetensors shards (with
// model.safetensors.index.json when sharded) seen as one name -> tensor table.
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/safetensors.h"

namespace moeq {

class Checkpoint {
 public:
  // Opens every shard (mmap) and validates headers and the index. Throws moeq::Error
  // naming the file and tensor on any inconsistency.
  static std::shared_ptr<Checkpoint> open(const std::string& dir);
  // A single safetensors file seen as a checkpoint.
  static std::shared_ptr<Checkpoint> open_file(const std::string& path);

  const std::string& dir() const { return dir_; }
  // Tensor names in a stable order (sorted).
  const std::vector<std::string>& names() const { return names_; }
  bool has(const std::string& name) const { return where_.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const;
  const uint8_t* data(const std::string& name) const;
  // The shard holding the tensor (its mapping keeps the bytes alive).
  const SafetensorsFile& file_of(const std::string& name) const;
  const std::vector<std::shared_ptr<SafetensorsFile>>& files() const { return files_; }
  uint64_t total_bytes() const;

 private:
  struct Where { size_t file; const TensorInfo* info; };
  const Where& where(const std::string& name) const;
  void add_file(std::shared_ptr<SafetensorsFile> f);
  std::string dir_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string, Where> where_;
  std::vector<std::string> names_;
};

}  // namespace moeq
