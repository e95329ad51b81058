#pragma once
// Helpers for the NVFP4/MXFP4 tests: byte comparison of parts, oracle case lookup,
// seeded random weights and SQNR.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <catch2/catch_test_macros.hpp>

#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "formats/format.h"
#include "io/checkpoint.h"

namespace moeq::test {

// "" when a and b have the same dtype, shape and bytes; else what differs (for INFO).
inline std::string byte_diff(const at::Tensor& a, const at::Tensor& b) {
  std::ostringstream o;
  if (a.scalar_type() != b.scalar_type()) o << "dtype " << a.scalar_type() << " vs " << b.scalar_type();
  else if (a.sizes() != b.sizes()) o << "shape " << a.sizes() << " vs " << b.sizes();
  else {
    const at::Tensor x = a.cpu().contiguous(), y = b.cpu().contiguous();
    const auto* p = static_cast<const uint8_t*>(x.data_ptr());
    const auto* q = static_cast<const uint8_t*>(y.data_ptr());
    const size_t n = x.nbytes();
    size_t bad = 0, first = n;
    for (size_t i = 0; i < n; ++i)
      if (p[i] != q[i]) {
        if (!bad) first = i;
        ++bad;
      }
    if (bad) o << bad << " of " << n << " bytes differ, first at byte " << first << ": " << int(p[first]) << " vs " << int(q[first]);
  }
  return o.str();
}

// Every part of a and b byte-identical (and the same part names).
inline void require_same_parts(const QuantizedTensor& a, const QuantizedTensor& b) {
  REQUIRE(a.parts.size() == b.parts.size());
  for (const auto& [name, t] : a.parts) {
    INFO("part " + name);
    REQUIRE(b.parts.count(name) == 1);
    CHECK(byte_diff(t, b.parts.at(name)) == "");
  }
}

// Case keys of an oracle file: the names "<key>.input", sorted.
inline std::vector<std::string> oracle_cases(const Checkpoint& ck) {
  std::vector<std::string> keys;
  const std::string suffix = ".input";
  for (const auto& n : ck.names())
    if (n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0)
      keys.push_back(n.substr(0, n.size() - suffix.size()));
  return keys;
}

inline at::Generator seeded(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

inline at::Tensor gaussian(at::IntArrayRef shape, uint64_t seed, at::ScalarType dt = at::kFloat) {
  auto g = seeded(seed);
  return at::randn(shape, g, at::kFloat).to(dt);
}

// Student-t with 3 degrees of freedom: z / sqrt(chi2_3 / 3).
inline at::Tensor student_t3(at::IntArrayRef shape, uint64_t seed, at::ScalarType dt = at::kFloat) {
  auto g = seeded(seed);
  const at::Tensor z = at::randn(shape, g, at::kFloat);
  at::Tensor chi2 = at::zeros(shape, at::kFloat);
  for (int i = 0; i < 3; ++i) chi2 += at::randn(shape, g, at::kFloat).pow(2);
  return (z / (chi2 / 3).sqrt()).to(dt);
}

// 10 log10(sum w^2 / sum (w - deq)^2), in double.
inline double sqnr_db(const at::Tensor& w, const at::Tensor& deq) {
  const at::Tensor x = w.to(at::kDouble), d = deq.to(at::kDouble);
  return 10.0 * std::log10(x.pow(2).sum().item<double>() / (x - d).pow(2).sum().item<double>());
}

}  // namespace moeq::test
