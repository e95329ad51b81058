#pragma once
// safetensors reading: a validated header and zero-copy access to tensor bytes in a
// memory-mapped file. Format: u64 little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}},
// then the data area; offsets are relative to the start of the data area.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/dtype.h"
#include "io/mapped_file.h"

namespace moeq {

struct TensorInfo {
  std::string name;
  DType dtype = DType::U8;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offset of the first byte, relative to the data area
  uint64_t end = 0;    // one past the last byte
  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // in file order (sorted by begin offset)
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // absolute offset of the data area in the file
};

// Parses and validates a safetensors header held in `bytes` (the whole file, or at least
// its header when `file_size` says how long the file is). `what` names the file in
// errors. Checks: header length inside the file, valid JSON object, known dtypes,
// non-negative shapes, offsets inside the data area, no overlap, and
// numel * dtype size == end - begin. Throws moeq::Error naming the file and tensor.
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t available, uint64_t file_size,
                                           const std::string& what);

class SafetensorsFile {
 public:
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return map_->path(); }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  // nullptr when absent.
  const TensorInfo* find(const std::string& name) const;
  const uint8_t* data(const TensorInfo& t) const { return map_->data() + header_.data_start + t.begin; }
  const std::shared_ptr<MappedFile>& mapping() const { return map_; }

 private:
  std::shared_ptr<MappedFile> map_;
  SafetensorsHeader header_;
  std::unordered_map<std::string, size_t> by_name_;
};

}  // namespace moeq
