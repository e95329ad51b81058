#pragma once
// The current CUDA stream of the calling thread (as libtorch tracks it), without dragging
// CUDA headers into the format files. Only meaningful when moeq is built with CUDA.
namespace moeq {
void* current_cuda_stream();  // a cudaStream_t
bool built_with_cuda();
void cuda_synchronize();  // waits for the current device (no-op without CUDA)
}  // namespace moeq
