#pragma once
// Plain types shared by the CPU kernels and the CUDA launchers (no ATen in .cu files).
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define MOEQ_HD __host__ __device__
#else
#define MOEQ_HD
#endif

namespace moeq {

enum class InType : int { BF16 = 0, F16 = 1, F32 = 2 };

// A weight stack seen by a kernel: E matrices of [rows, cols], row-major and contiguous.
struct WeightBatch {
  const void* data = nullptr;
  InType type = InType::BF16;
  int64_t experts = 1, rows = 0, cols = 0;
  MOEQ_HD int64_t numel() const { return experts * rows * cols; }
};

// Host-side element loads (the CUDA files have their own device versions).
inline float bf16_bits_to_float(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace moeq
