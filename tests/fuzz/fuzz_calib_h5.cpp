// libFuzzer target (cmake -DMOEQ_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++; ASan + UBSan):
//   ./fuzz_calib_h5 -max_total_time=60 corpus/
#include "fuzz/calib_h5_body.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  moeq::fuzz::calib_h5_one(data, size);
  return 0;
}
