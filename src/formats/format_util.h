#pragma once
#include <cstdint>
// Helpers shared by the format files: the ATen <-> kernel boundary.
#include <ATen/ATen.h>

#include <c10/util/Half.h>

#include "core/error.h"
#include "formats/kernel_types.h"

namespace moeq {

// Contiguous 3D view [E, rows, cols] of a 2D or 3D weight, and its kernel description.
inline WeightBatch as_batch(const at::Tensor& w3) {
  WeightBatch b;
  b.data = w3.data_ptr();
  b.type = w3.scalar_type() == at::kBFloat16 ? InType::BF16 : w3.scalar_type() == at::kHalf ? InType::F16 : InType::F32;
  b.experts = w3.size(0);
  b.rows = w3.size(1);
  b.cols = w3.size(2);
  return b;
}

inline at::Tensor to_3d(const at::Tensor& w) { return (w.dim() == 2 ? w.unsqueeze(0) : w).contiguous(); }

// Drops the leading expert dim again for a 2D input.
inline at::Tensor like_input(const at::Tensor& t, bool was_2d) { return was_2d ? t.squeeze(0) : t; }

// Float conversion of one element on the host (f16 through c10 for exact IEEE semantics).
float load_host(const WeightBatch& b, int64_t i);

// Typed element loads, so hot loops dispatch on the input type once, not per element.
struct Bf16In { using T = uint16_t; static float load(const T* p, int64_t i) { return bf16_bits_to_float(p[i]); } };
struct F16In { using T = c10::Half; static float load(const T* p, int64_t i) { return static_cast<float>(p[i]); } };
struct F32In { using T = float; static float load(const T* p, int64_t i) { return p[i]; } };
// Calls fn(Loader{}) with the loader for b.type; fn uses Loader::load(ptr, i) on
// static_cast<const typename Loader::T*>(b.data).
template <typename Fn>
auto dispatch_in_type(InType t, Fn&& fn) {
  switch (t) {
    case InType::BF16: return fn(Bf16In{});
    case InType::F16: return fn(F16In{});
    default: return fn(F32In{});
  }
}

// Per-expert amax ([E] float) of the batch on the host; throws on NaN/Inf.
void amax_per_expert_cpu(const WeightBatch& b, float* amax, const char* format);

}  // namespace moeq
