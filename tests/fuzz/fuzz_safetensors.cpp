// libFuzzer target (cmake -DMOEQ_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++):
//   ./fuzz_safetensors -max_total_time=60 corpus/
#include "fuzz/fuzz_body.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  moeq::fuzz::parse_one(data, size);
  return 0;
}
