#pragma once
// A read-only memory mapping of a whole file. Tensors read from a checkpoint are views
// into it and keep it alive through a shared_ptr.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace moeq {

class MappedFile {
 public:
  // Throws moeq::Error naming the path when the file cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

}  // namespace moeq
