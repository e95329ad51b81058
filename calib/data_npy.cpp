// .npy reader for pre-tokenized calibration ids.
#include <cstring>
#include <fstream>
#include <regex>

#include "calib/data_readers.h"
#include "core/error.h"

namespace moeq::calib_data {
namespace {
template <typename T>
void widen(const std::string& raw, std::vector<int64_t>& out) {
  const size_t n = raw.size() / sizeof(T);
  out.resize(n);
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, raw.data() + i * sizeof(T), sizeof(T));
    out[i] = static_cast<int64_t>(v);
  }
}
}  // namespace

std::vector<int64_t> read_npy_ids(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open '" + path + "'");
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw Error(path + ": not a .npy file (no \\x93NUMPY magic)");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len, start;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw Error(path + ": truncated .npy header");
    header_len = 0;
    for (int k = 0; k < 4; ++k) header_len |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + k])) << (8 * k);
    start = 12;
  } else {
    throw Error(path + ": unsupported .npy format version " + std::to_string(major));
  }
  if (start + header_len > bytes.size()) throw Error(path + ": truncated .npy header");
  const std::string header = bytes.substr(start, header_len);
  std::smatch m;
  if (!std::regex_search(header, m, std::regex(R"('descr'\s*:\s*'([^']*)')")))
    throw Error(path + ": .npy header has no 'descr': " + header);
  const std::string descr = m[1];
  if (std::regex_search(header, std::regex(R"('fortran_order'\s*:\s*True)")))
    throw Error(path + ": Fortran-ordered arrays are not supported; save with np.ascontiguousarray(ids)");
  if (!std::regex_search(header, m, std::regex(R"('shape'\s*:\s*\(([^)]*)\))")))
    throw Error(path + ": .npy header has no 'shape': " + header);
  size_t count = 1;
  const std::string dims = m[1];
  const std::regex number(R"(\d+)");
  for (std::sregex_iterator it(dims.begin(), dims.end(), number), end; it != end; ++it)
    count *= std::stoull(it->str());
  size_t width;
  if (descr == "<i8" || descr == "<u8") width = 8;
  else if (descr == "<i4" || descr == "<u4") width = 4;
  else if (descr == "<i2" || descr == "<u2") width = 2;
  else throw Error(path + ": dtype '" + descr + "' is not a little-endian integer type (int16/32/64, uint16/32); token ids must be integers");
  const size_t data_start = start + header_len;
  if (bytes.size() - data_start != count * width)
    throw Error(path + ": holds " + std::to_string(bytes.size() - data_start) + " data bytes, the header's shape (" + dims +
                ") and dtype " + descr + " need " + std::to_string(count * width));
  const std::string raw = bytes.substr(data_start);
  std::vector<int64_t> out;
  if (descr == "<i8") widen<int64_t>(raw, out);
  else if (descr == "<u8") {
    widen<uint64_t>(raw, out);  // values above int64 range become negative and are rejected by the range check
  } else if (descr == "<i4") widen<int32_t>(raw, out);
  else if (descr == "<u4") widen<uint32_t>(raw, out);
  else if (descr == "<i2") widen<int16_t>(raw, out);
  else widen<uint16_t>(raw, out);
  return out;
}

}  // namespace moeq::calib_data
