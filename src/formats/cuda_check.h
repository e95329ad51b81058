#pragma once
// Error checking for the raw CUDA launchers in src/formats/*.cu (which include no ATen).
#include <string>

namespace moeq {
// Throws moeq::Error("<what>: <CUDA error string>") when the last launch or call failed.
void cuda_check_last(const char* what);
}  // namespace moeq
