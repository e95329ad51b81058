// Pre-tokenized ids from HDF5 files (the file is written here with the HDF5 C API).
#include "calib/data_readers.h"
#include "tests/calib/dataset_test_util.h"

#ifdef MOEQ_WITH_HDF5_IDS
#include <hdf5.h>
#endif

using moeq::load_calibration_tokens;
using moeq::test::model_dir;
using moeq::test::Rows;
using moeq::test::rows_of;
using moeq::test::spec;
using moeq::test::TempDir;
using moeq::test::write_file;

TEST_CASE("HDF5 ids: named dataset, guessed name, errors", "[dataset]") {
  if (!moeq::calib_data::hdf5_available()) SKIP("built without HDF5");
#ifdef MOEQ_WITH_HDF5_IDS
  TempDir d;
  const auto dir = model_dir(d, false);
  const std::string path = d.path + "/ids.h5";
  {
    const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const int32_t v[2][3] = {{1, 2, 3}, {4, 5, 6}};
    const hsize_t dims[2] = {2, 3};
    const hid_t s = H5Screate_simple(2, dims, nullptr);
    for (const char* name : {"input_ids", "other"}) {
      const hid_t ds = H5Dcreate2(f, name, H5T_STD_I32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
      H5Dclose(ds);
    }
    const double x[3] = {1, 2, 3};
    const hsize_t d1[1] = {3};
    const hid_t s1 = H5Screate_simple(1, d1, nullptr);
    const hid_t fd = H5Dcreate2(f, "floats", H5T_IEEE_F64LE, s1, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(fd, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(fd);
    H5Sclose(s1);
    H5Sclose(s);
    H5Fclose(f);
  }
  const auto t = load_calibration_tokens(spec(path, dir, 2, 3));
  CHECK(rows_of(t.ids) == Rows{{1, 2, 3}, {4, 5, 6}});
  CHECK_THAT(t.description, Catch::Matchers::ContainsSubstring("input_ids [2x3]"));
  CHECK(rows_of(load_calibration_tokens(spec(path + ":other", dir, 1, 6)).ids) == Rows{{1, 2, 3, 4, 5, 6}});
  REQUIRE_ERROR_MENTIONS(load_calibration_tokens(spec(path + ":floats", dir, 1, 3)), "ids.h5:floats", "integer");
  REQUIRE_ERROR_MENTIONS(load_calibration_tokens(spec(path + ":missing", dir, 1, 3)), "ids.h5", "no dataset 'missing'");
  write_file(d.path + "/fake.h5", "not hdf5");
  REQUIRE_ERROR_MENTIONS(load_calibration_tokens(spec(d.path + "/fake.h5", dir, 1, 3)), "fake.h5", "HDF5");
#endif
}

