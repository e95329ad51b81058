#pragma once
// Host-side pieces shared by the NVFP4 and MXFP4 format files: typed element loads for
// the CPU kernels, and the E2M1 rounding/packing written with ATen ops for the torch-op
// paths and dequantization.
#include <ATen/ATen.h>
#include <c10/util/Half.h>

#include <type_traits>

#include "formats/e2m1.h"
#include "formats/kernel_types.h"

namespace moeq {

template <InType T>
inline float load_as(const void* p, int64_t i) {
  if constexpr (T == InType::BF16) return bf16_bits_to_float(static_cast<const uint16_t*>(p)[i]);
  else if constexpr (T == InType::F16) return c10::detail::fp16_ieee_to_fp32_value(static_cast<const uint16_t*>(p)[i]);
  else return static_cast<const float*>(p)[i];
}

// Calls f(std::integral_constant<InType, t>{}) so kernels get the load type at compile time.
template <class F>
inline auto with_in_type(InType t, F&& f) {
  switch (t) {
    case InType::BF16: return f(std::integral_constant<InType, InType::BF16>{});
    case InType::F16: return f(std::integral_constant<InType, InType::F16>{});
    default: return f(std::integral_constant<InType, InType::F32>{});
  }
}

// E2M1 codes (uint8, one per element) of v with the given sign mask; the same comparisons
// as e2m1_index, so NaN also maps to index 7.
inline at::Tensor e2m1_codes_torch(const at::Tensor& v, const at::Tensor& negative) {
  const at::Tensor a = v.abs();
  at::Tensor idx = at::full(a.sizes(), 7, a.options().dtype(at::kByte));
  for (double le : {5.0, 2.5, 1.25, 0.25}) idx = idx - (a <= le).to(at::kByte);
  for (double lt : {3.5, 1.75, 0.75}) idx = idx - (a < lt).to(at::kByte);
  return at::bitwise_or(idx, negative.to(at::kByte) * 8);
}

// [.., n] codes -> [.., n/2] bytes, even element in the low nibble.
inline at::Tensor e2m1_pack_torch(const at::Tensor& codes) {
  std::vector<int64_t> pairs = codes.sizes().vec();
  pairs.back() /= 2;
  pairs.push_back(2);
  const at::Tensor p = codes.reshape(pairs);
  return at::bitwise_or(p.select(-1, 0), p.select(-1, 1) * 16);
}

// [.., n/2] bytes -> [.., n] codes.
inline at::Tensor e2m1_unpack_torch(const at::Tensor& packed) {
  const at::Tensor lo = at::bitwise_and(packed, 15), hi = at::bitwise_right_shift(packed, 4);
  return at::stack({lo, hi}, -1).flatten(-2);
}

// Float values of codes; negative_zero: the value of code 8 (ModelOpt's table has +0).
inline at::Tensor e2m1_values_torch(const at::Tensor& codes, bool negative_zero) {
  const float z = negative_zero ? -0.f : 0.f;
  const float table[16] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f, z, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};
  const at::Tensor t = at::tensor(at::ArrayRef<float>(table, 16)).to(codes.device());
  return t.index_select(0, codes.flatten().to(at::kLong)).view(codes.sizes());
}

}  // namespace moeq
