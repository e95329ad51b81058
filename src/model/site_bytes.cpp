#include "model/site_bytes.h"

#include <algorithm>

#include "io/dtype.h"

namespace moeq {

uint64_t stored_bytes(const Checkpoint& ck, const Site& s) {
  const uint64_t n = static_cast<uint64_t>(s.view.rows * s.view.cols);
  const auto cdiv = [](int64_t x, int64_t y) { return static_cast<uint64_t>((x + y - 1) / std::max<int64_t>(1, y)); };
  switch (s.view.source) {
    case SourceFormat::Mxfp4:
      return n / 2 + n / 32;
    case SourceFormat::Fp8Block:
      return n + cdiv(s.view.rows, s.view.block_rows) * cdiv(s.view.cols, s.view.block_cols) *
                     dtype_size(ck.info(s.view.scale).dtype);
    case SourceFormat::Plain:
      break;
  }
  return n * dtype_size(ck.info(s.view.tensor).dtype);
}

}  // namespace moeq
