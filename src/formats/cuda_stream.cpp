#include "formats/cuda_stream.h"

#include "core/error.h"
#ifdef MOEQ_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace moeq {
#ifdef MOEQ_WITH_CUDA
void* current_cuda_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }
bool built_with_cuda() { return true; }
void cuda_synchronize() { c10::cuda::device_synchronize(); }
#else
void* current_cuda_stream() { throw Error("moeq was built without CUDA: rebuild on a machine with nvcc and a CUDA libtorch"); }
bool built_with_cuda() { return false; }
void cuda_synchronize() {}
#endif
}  // namespace moeq
