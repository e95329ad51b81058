#include <hdf5.h>

#include "calib/h5.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <type_traits>

#include "core/error.h"

static_assert(std::is_same_v<::hid_t, moeq::h5::hid_t>, "calib/h5.h: hid_t must be HDF5's (int64_t since 1.10)");
static_assert(std::is_same_v<::herr_t, moeq::h5::herr_t>, "calib/h5.h: herr_t must be HDF5's");

namespace moeq::h5 {
namespace {

// HDF5 prints its error stack to stderr by default; moeq reports errors itself.
void quiet() {
  static const bool done = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) { throw Error(path + ": " + what); }

Handle check(hid_t id, herr_t (*close)(hid_t), const std::string& path, const std::string& what) {
  if (id < 0) fail(path, what);
  return Handle(id, close);
}

Handle string_type(size_t size) {
  Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t.id(), size == 0 ? 1 : size);
  H5Tset_strpad(t.id(), H5T_STR_NULLPAD);
  return t;
}

// Reads a string-typed attribute or dataset element buffer of `n` strings.
std::vector<std::string> read_string_buffer(hid_t type, size_t n, const std::function<herr_t(hid_t, void*)>& read,
                                            const std::string& path, const std::string& name) {
  if (H5Tget_class(type) != H5T_STRING) fail(path, name + " is not a string");
  std::vector<std::string> out(n);
  if (n == 0) return out;
  if (H5Tis_variable_str(type) > 0) {
    Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.id(), H5T_VARIABLE);
    std::vector<char*> ptrs(n, nullptr);
    if (read(mem.id(), ptrs.data()) < 0) fail(path, "cannot read " + name);
    for (size_t i = 0; i < n; ++i) {
      if (ptrs[i]) out[i] = ptrs[i];
      H5free_memory(ptrs[i]);
    }
    return out;
  }
  const size_t size = H5Tget_size(type);
  Handle mem = string_type(size);
  std::vector<char> buf(n * size + 1, '\0');
  if (read(mem.id(), buf.data()) < 0) fail(path, "cannot read " + name);
  for (size_t i = 0; i < n; ++i) out[i] = std::string(buf.data() + i * size, strnlen(buf.data() + i * size, size));
  return out;
}

}  // namespace

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    if (id_ >= 0 && close_) close_(id_);
    id_ = o.id_;
    close_ = o.close_;
    o.id_ = -1;
  }
  return *this;
}

Handle::~Handle() {
  if (id_ >= 0 && close_) close_(id_);
}

File File::create(const std::string& path) {
  quiet();
  return File(path, check(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose, path,
                          "cannot create the HDF5 file (is the directory writable?)"));
}

File File::open(const std::string& path) {
  quiet();
  const htri_t is = H5Fis_hdf5(path.c_str());
  if (is < 0) fail(path, "cannot open (does it exist?)");
  if (is == 0) fail(path, "not an HDF5 file");
  return File(path, check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, path, "cannot open the HDF5 file"));
}

void File::make_group(const std::string& name) {
  if (exists(name)) return;
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.id(), 1);
  check(H5Gcreate2(root(), name.c_str(), lcpl.id(), H5P_DEFAULT, H5P_DEFAULT), H5Gclose, path_, "cannot create group " + name);
}

bool File::exists(const std::string& name) const {
  // H5Lexists fails on a missing parent, so walk the path.
  std::string sofar;
  size_t pos = 0;
  while (pos < name.size()) {
    size_t next = name.find('/', pos + 1);
    if (next == std::string::npos) next = name.size();
    sofar = name.substr(0, next);
    if (sofar != "/" && H5Lexists(root(), sofar.c_str(), H5P_DEFAULT) <= 0) return false;
    pos = next;
  }
  return true;
}

void File::attr(const std::string& obj, const std::string& key, const std::string& v) {
  Handle o = check(H5Oopen(root(), obj.c_str(), H5P_DEFAULT), H5Oclose, path_, "no object " + obj);
  Handle type = string_type(v.size());
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a = check(H5Acreate2(o.id(), key.c_str(), type.id(), space.id(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose, path_,
                   "cannot create attribute " + obj + "@" + key);
  std::string buf = v.empty() ? std::string(1, '\0') : v;
  if (H5Awrite(a.id(), type.id(), buf.data()) < 0) fail(path_, "cannot write attribute " + obj + "@" + key);
}

void File::attr(const std::string& obj, const std::string& key, int64_t v) {
  Handle o = check(H5Oopen(root(), obj.c_str(), H5P_DEFAULT), H5Oclose, path_, "no object " + obj);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a = check(H5Acreate2(o.id(), key.c_str(), H5T_STD_I64LE, space.id(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose, path_,
                   "cannot create attribute " + obj + "@" + key);
  if (H5Awrite(a.id(), H5T_NATIVE_INT64, &v) < 0) fail(path_, "cannot write attribute " + obj + "@" + key);
}

void File::attr(const std::string& obj, const std::string& key, double v) {
  Handle o = check(H5Oopen(root(), obj.c_str(), H5P_DEFAULT), H5Oclose, path_, "no object " + obj);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a = check(H5Acreate2(o.id(), key.c_str(), H5T_IEEE_F64LE, space.id(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose, path_,
                   "cannot create attribute " + obj + "@" + key);
  if (H5Awrite(a.id(), H5T_NATIVE_DOUBLE, &v) < 0) fail(path_, "cannot write attribute " + obj + "@" + key);
}

namespace {
Handle open_attr(hid_t root, const std::string& path, const std::string& obj, const std::string& key) {
  if (H5Aexists_by_name(root, obj.c_str(), key.c_str(), H5P_DEFAULT) <= 0)
    fail(path, "attribute " + key + " missing on " + obj + " (not a moeq calibration file, or a damaged one)");
  return check(H5Aopen_by_name(root, obj.c_str(), key.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose, path,
               "cannot open attribute " + obj + "@" + key);
}
}  // namespace

std::string File::attr_string(const std::string& obj, const std::string& key) const {
  Handle a = open_attr(root(), path_, obj, key);
  Handle type(H5Aget_type(a.id()), H5Tclose);
  return read_string_buffer(type.id(), 1, [&](hid_t mem, void* buf) { return H5Aread(a.id(), mem, buf); }, path_,
                            obj + "@" + key)[0];
}

int64_t File::attr_int(const std::string& obj, const std::string& key) const {
  Handle a = open_attr(root(), path_, obj, key);
  Handle type(H5Aget_type(a.id()), H5Tclose);
  if (H5Tget_class(type.id()) != H5T_INTEGER) fail(path_, "attribute " + obj + "@" + key + " is not an integer");
  int64_t v = 0;
  if (H5Aread(a.id(), H5T_NATIVE_INT64, &v) < 0) fail(path_, "cannot read attribute " + obj + "@" + key);
  return v;
}

double File::attr_double(const std::string& obj, const std::string& key) const {
  Handle a = open_attr(root(), path_, obj, key);
  Handle type(H5Aget_type(a.id()), H5Tclose);
  const H5T_class_t c = H5Tget_class(type.id());
  if (c != H5T_FLOAT && c != H5T_INTEGER) fail(path_, "attribute " + obj + "@" + key + " is not a number");
  double v = 0;
  if (H5Aread(a.id(), H5T_NATIVE_DOUBLE, &v) < 0) fail(path_, "cannot read attribute " + obj + "@" + key);
  return v;
}

namespace {
void write_1d(const File& f, hid_t root, const std::string& name, hid_t file_type, hid_t mem_type, size_t n,
              const void* data) {
  const hsize_t dims[1] = {n};
  Handle space(H5Screate_simple(1, dims, nullptr), H5Sclose);
  Handle d = check(H5Dcreate2(root, name.c_str(), file_type, space.id(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
                   f.path(), "cannot create dataset " + name);
  if (n > 0 && H5Dwrite(d.id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) fail(f.path(), "cannot write dataset " + name);
}
}  // namespace

void File::write(const std::string& name, const std::vector<float>& v) {
  write_1d(*this, root(), name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, v.size(), v.data());
}
void File::write(const std::string& name, const std::vector<int64_t>& v) {
  write_1d(*this, root(), name, H5T_STD_I64LE, H5T_NATIVE_INT64, v.size(), v.data());
}
void File::write(const std::string& name, const std::vector<uint8_t>& v) {
  write_1d(*this, root(), name, H5T_STD_U8LE, H5T_NATIVE_UINT8, v.size(), v.data());
}
void File::write(const std::string& name, const std::vector<std::string>& v) {
  size_t size = 1;
  for (const auto& s : v) size = std::max(size, s.size());
  std::vector<char> buf(v.size() * size, '\0');
  for (size_t i = 0; i < v.size(); ++i) std::memcpy(buf.data() + i * size, v[i].data(), v[i].size());
  Handle type = string_type(size);
  write_1d(*this, root(), name, type.id(), type.id(), v.size(), buf.data());
}

int64_t File::length(const std::string& name, hid_t dset) const {
  Handle space(H5Dget_space(dset), H5Sclose);
  if (H5Sget_simple_extent_ndims(space.id()) != 1) fail(path_, "dataset " + name + " should be 1-dimensional");
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space.id(), &n, nullptr);
  // moeq writes every dataset in full (no compression): a length beyond the stored bytes is a
  // damaged header, refused before anything that size is allocated (found by fuzz_calib_h5).
  Handle type(H5Dget_type(dset), H5Tclose);
  const hsize_t elem = std::max<size_t>(1, H5Tget_size(type.id())), stored = H5Dget_storage_size(dset);
  if (n > stored / elem)
    fail(path_, "dataset " + name + " declares " + std::to_string(n) + " elements but stores " + std::to_string(stored) +
                    " bytes (a damaged file)");
  return static_cast<int64_t>(n);
}

namespace {
template <typename T>
std::vector<T> read_numeric(const File& f, hid_t root, const std::string& name, hid_t mem_type, H5T_class_t want,
                            const std::function<int64_t(hid_t)>& length) {
  if (!f.exists(name)) fail(f.path(), "dataset " + name + " missing (not a moeq calibration file, or a damaged one)");
  Handle d = check(H5Dopen2(root, name.c_str(), H5P_DEFAULT), H5Dclose, f.path(), "cannot open dataset " + name);
  Handle type(H5Dget_type(d.id()), H5Tclose);
  const H5T_class_t c = H5Tget_class(type.id());
  if (c != want && !(want == H5T_FLOAT && c == H5T_INTEGER))
    fail(f.path(), "dataset " + name + " has the wrong type (" + (want == H5T_FLOAT ? "float" : "integer") + " expected)");
  std::vector<T> out(static_cast<size_t>(length(d.id())));
  if (!out.empty() && H5Dread(d.id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
    fail(f.path(), "cannot read dataset " + name);
  return out;
}
}  // namespace

std::vector<float> File::read_f32(const std::string& name) const {
  return read_numeric<float>(*this, root(), name, H5T_NATIVE_FLOAT, H5T_FLOAT, [&](hid_t d) { return length(name, d); });
}
std::vector<int64_t> File::read_i64(const std::string& name) const {
  return read_numeric<int64_t>(*this, root(), name, H5T_NATIVE_INT64, H5T_INTEGER, [&](hid_t d) { return length(name, d); });
}
std::vector<uint8_t> File::read_u8(const std::string& name) const {
  return read_numeric<uint8_t>(*this, root(), name, H5T_NATIVE_UINT8, H5T_INTEGER, [&](hid_t d) { return length(name, d); });
}

std::vector<std::string> File::read_strings(const std::string& name) const {
  if (!exists(name)) fail(path_, "dataset " + name + " missing (not a moeq calibration file, or a damaged one)");
  Handle d = check(H5Dopen2(root(), name.c_str(), H5P_DEFAULT), H5Dclose, path_, "cannot open dataset " + name);
  Handle type(H5Dget_type(d.id()), H5Tclose);
  const size_t n = static_cast<size_t>(length(name, d.id()));
  return read_string_buffer(type.id(), n, [&](hid_t mem, void* buf) { return H5Dread(d.id(), mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf); },
                            path_, "dataset " + name);
}

std::vector<std::string> File::members(const std::string& group) const {
  if (!exists(group)) return {};
  Handle g = check(H5Gopen2(root(), group.c_str(), H5P_DEFAULT), H5Gclose, path_, "cannot open group " + group);
  H5G_info_t info;
  if (H5Gget_info(g.id(), &info) < 0) fail(path_, "cannot list group " + group);
  std::vector<std::string> out;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t len = H5Lget_name_by_idx(g.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (len < 0) fail(path_, "cannot list group " + group);
    std::string name(static_cast<size_t>(len) + 1, '\0');
    H5Lget_name_by_idx(g.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT);
    name.resize(static_cast<size_t>(len));
    out.push_back(name);
  }
  return out;
}

}  // namespace moeq::h5
