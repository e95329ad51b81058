#include "formats/format_util.h"

#include <c10/util/Half.h>

#include <cmath>

#include "formats/format.h"

namespace moeq {

float load_host(const WeightBatch& b, int64_t i) {
  switch (b.type) {
    case InType::BF16: return bf16_bits_to_float(static_cast<const uint16_t*>(b.data)[i]);
    case InType::F16: return static_cast<float>(static_cast<const c10::Half*>(b.data)[i]);
    case InType::F32: return static_cast<const float*>(b.data)[i];
  }
  return 0.f;
}

void amax_per_expert_cpu(const WeightBatch& b, float* amax, const char* format) {
  const int64_t n = b.rows * b.cols;
  bool finite = true;
  dispatch_in_type(b.type, [&](auto in) {
    using L = decltype(in);
    const auto* p = static_cast<const typename L::T*>(b.data);
    for (int64_t e = 0; e < b.experts; ++e) {
      float m = 0.f;
      // NaN fails v <= FLT_MAX, Inf fails it too: one compare finds both.
#pragma omp parallel for reduction(max : m) reduction(&& : finite)
      for (int64_t i = 0; i < n; ++i) {
        const float v = std::fabs(L::load(p, e * n + i));
        finite = finite && (v <= 3.4028234663852886e38f);
        m = v > m ? v : m;
      }
      amax[e] = m;
    }
  });
  if (!finite) throw_non_finite(format);
}

}  // namespace moeq
