// The NF4/FP4 CUDA kernel's binary searches (nf4_code_search, fp4_code_search) against the
// reference comparison counts (nf4_code, fp4_code): every bf16 value, the floats within 8 ulps
// of every threshold, and random floats.
#include <ATen/ATen.h>

#include <catch2/catch_test_macros.hpp>
#include <cstring>
#include <random>
#include <vector>

#include "formats/bnb4/bnb4_kernels.h"

using namespace moeq;
using namespace moeq::bnb;

TEST_CASE("bnb4 binary-search codes equal the threshold counts", "[bnb4]") {
  static const uint32_t nf4[15] = MOEQ_BNB_NF4_THRESHOLDS, fp4[7] = MOEQ_BNB_FP4_THRESHOLDS;
  static const uint32_t plus[32] = MOEQ_BNB_RCP_PLUS, minus[32] = MOEQ_BNB_RCP_MINUS, dyn[256] = MOEQ_BNB_DYNAMIC_MAP;
  const Tables t{nf4, fp4, plus, minus, dyn};
  float nf4f[15], fp4f[7];
  for (int i = 0; i < 15; ++i) nf4f[i] = u2f(nf4[i]);
  for (int i = 0; i < 7; ++i) fp4f[i] = u2f(fp4[i]);
  std::vector<uint32_t> xs;
  for (uint32_t b = 0; b < 65536; ++b) xs.push_back(b << 16);  // NaN and Inf included
  for (const uint32_t* th : {static_cast<const uint32_t*>(nf4), static_cast<const uint32_t*>(fp4)})
    for (int i = 0; i < (th == nf4 ? 15 : 7); ++i)
      for (int k = -8; k <= 8; ++k) {
        xs.push_back(th[i] + k);
        xs.push_back((th[i] ^ 0x80000000u) + k);  // the negated threshold's neighbours (FP4 uses |x|)
      }
  std::mt19937 rng(29);
  for (int i = 0; i < 2000000; ++i) xs.push_back(rng());
  int64_t bad = 0;
  for (const uint32_t b : xs) {
    const float x = u2f(b);
    bad += nf4_code_search(x, nf4f) != nf4_code(x, t);
    bad += fp4_code_search(x, fp4f) != fp4_code(x, t);
  }
  CHECK(xs.size() > 2000000);
  CHECK(bad == 0);
}
