// HDF5 reader for pre-tokenized calibration ids (C API; optional, see CMakeLists.txt).
#include <filesystem>

#include "calib/data_readers.h"
#include "calib/h5.h"
#include "core/error.h"

#ifdef MOEQ_WITH_HDF5_IDS
#include <hdf5.h>
#endif

namespace moeq::calib_data {

#ifdef MOEQ_WITH_HDF5_IDS
namespace {
using h5::Handle;  // calib/h5.h's RAII handle, the one wrapper over the HDF5 C API

// Names of the datasets directly under the root group (calls that exist in HDF5 1.10 to 1.14).
std::vector<std::string> root_datasets(hid_t file) {
  std::vector<std::string> out;
  H5G_info_t info;
  if (H5Gget_info(file, &info) < 0) return out;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t n = H5Lget_name_by_idx(file, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n <= 0) continue;
    std::string name(static_cast<size_t>(n), '\0');
    H5Lget_name_by_idx(file, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size() + 1, H5P_DEFAULT);
    const hid_t ds = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
    if (ds >= 0) {
      out.push_back(name);
      H5Dclose(ds);
    }
  }
  return out;
}
}  // namespace

bool hdf5_available() { return true; }

std::vector<int64_t> read_hdf5_ids(const std::string& spec, std::string& description) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // errors become moeq::Error messages instead
  std::string path = spec, name;
  if (const size_t colon = spec.rfind(':'); colon != std::string::npos && !std::filesystem::exists(spec)) {
    path = spec.substr(0, colon);
    name = spec.substr(colon + 1);
  }
  Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (file.id() < 0) throw Error("cannot open '" + path + "' as an HDF5 file");
  const std::vector<std::string> roots = root_datasets(file.id());
  if (name.empty()) {
    for (const char* guess : {"input_ids", "ids", "tokens"})
      for (const auto& r : roots)
        if (name.empty() && r == guess) name = r;
    if (name.empty() && roots.size() == 1) name = roots[0];
    if (name.empty()) {
      std::string list;
      for (const auto& r : roots) list += (list.empty() ? "" : ", ") + r;
      throw Error(path + ": no dataset named input_ids, ids or tokens (root datasets: " + (list.empty() ? "none" : list) +
                  "); name one as " + path + ":DATASET");
    }
  }
  Handle ds(H5Dopen2(file.id(), name.c_str(), H5P_DEFAULT), H5Dclose);
  if (ds.id() < 0) throw Error(path + ": no dataset '" + name + "'");
  Handle type(H5Dget_type(ds.id()), H5Tclose);
  if (H5Tget_class(type.id()) != H5T_INTEGER)
    throw Error(path + ":" + name + ": token ids must be an integer dataset");
  Handle space(H5Dget_space(ds.id()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.id());
  std::vector<hsize_t> dims(rank > 0 ? rank : 0);
  if (rank > 0) H5Sget_simple_extent_dims(space.id(), dims.data(), nullptr);
  size_t count = 1;
  std::string shape;
  for (auto d : dims) {
    count *= d;
    shape += (shape.empty() ? "" : "x") + std::to_string(d);
  }
  std::vector<int64_t> out(count);
  if (count && H5Dread(ds.id(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
    throw Error(path + ":" + name + ": reading the dataset failed");
  description = path + ":" + name + " [" + shape + "]";
  return out;
}
#else
bool hdf5_available() { return false; }
std::vector<int64_t> read_hdf5_ids(const std::string& spec, std::string&) {
  throw Error("'" + spec + "': moeq was built without HDF5 (libhdf5-dev); save the ids as .npy or JSONL instead");
}
#endif

}  // namespace moeq::calib_data
