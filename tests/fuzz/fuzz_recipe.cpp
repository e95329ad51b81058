// libFuzzer target (cmake -DMOEQ_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++; ASan + UBSan):
//   ./fuzz_recipe -max_total_time=60 corpus/
#include "fuzz/recipe_body.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  moeq::fuzz::recipe_one(data, size);
  return 0;
}
