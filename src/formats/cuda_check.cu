#include <cuda_runtime.h>

#include "core/error.h"
#include "formats/cuda_check.h"

namespace moeq {
void cuda_check_last(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw Error(std::string(what) + ": CUDA error: " + cudaGetErrorString(e));
}
}  // namespace moeq
