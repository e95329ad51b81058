#pragma once
// Element types as safetensors names them, with their sizes.
#include <cstdint>
#include <string>

namespace moeq {

enum class DType : uint8_t { BOOL, U8, I8, U16, I16, F16, BF16, U32, I32, F32, U64, I64, F64, F8_E4M3, F8_E5M2 };

// Bytes per element.
size_t dtype_size(DType t);
// "BF16", "F8_E4M3", ... exactly as in a safetensors header.
const char* dtype_name(DType t);
// Parses a safetensors dtype string; returns false when unknown.
bool parse_dtype(const std::string& s, DType* out);

}  // namespace moeq
