#pragma once
// A thin layer over the HDF5 C API for calib.h5: handles closed by RAII, errors as
// moeq::Error naming the file and the object, HDF5's own error printing turned off.
// Strings are fixed-length (null-padded) so files read the same with HDF5 1.10 and 1.14.
#include <cstdint>
#include <string>
#include <vector>

namespace moeq::h5 {

// HDF5's hid_t and herr_t (h5.cpp checks they match), so that this header does not pull
// hdf5.h and its include path into every file that reads calib.h5.
using hid_t = int64_t;
using herr_t = int;

class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle();
  hid_t id() const { return id_; }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// A file open for writing (created, truncating) or reading. `path` names it in errors.
class File {
 public:
  static File create(const std::string& path);
  static File open(const std::string& path);
  const std::string& path() const { return path_; }
  hid_t root() const { return file_.id(); }

  // Groups ("/a/b"), created with their parents.
  void make_group(const std::string& name);
  bool exists(const std::string& name) const;

  // Attributes on an object ("/" = root).
  void attr(const std::string& obj, const std::string& key, const std::string& v);
  void attr(const std::string& obj, const std::string& key, int64_t v);
  void attr(const std::string& obj, const std::string& key, double v);
  std::string attr_string(const std::string& obj, const std::string& key) const;
  int64_t attr_int(const std::string& obj, const std::string& key) const;
  double attr_double(const std::string& obj, const std::string& key) const;

  // 1D datasets (parents must exist).
  void write(const std::string& name, const std::vector<float>& v);
  void write(const std::string& name, const std::vector<int64_t>& v);
  void write(const std::string& name, const std::vector<uint8_t>& v);
  void write(const std::string& name, const std::vector<std::string>& v);
  std::vector<float> read_f32(const std::string& name) const;
  std::vector<int64_t> read_i64(const std::string& name) const;
  std::vector<uint8_t> read_u8(const std::string& name) const;
  std::vector<std::string> read_strings(const std::string& name) const;
  // Names of the members of a group.
  std::vector<std::string> members(const std::string& group) const;

 private:
  File(std::string path, Handle f) : path_(std::move(path)), file_(std::move(f)) {}
  int64_t length(const std::string& name, hid_t dset) const;
  std::string path_;
  Handle file_;
};

}  // namespace moeq::h5
