// libFuzzer target (cmake -DMOEQ_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++; ASan + UBSan):
//   ./fuzz_tokenizer -max_total_time=60 corpus/
// The first byte picks the operation: even, the rest is a tokenizer.json to load (then encode
// fixed texts with); odd, the rest is a text for a byte-level tokenizer (tokenizer_json.h).
#include "fuzz/tokenizer_body.h"
#include "fuzz/tokenizer_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<moeq::Tokenizer> fixed = [] {
    const std::string j = moeq::fuzz::byte_level_tokenizer_json();
    const std::string path = moeq::fuzz::write_scratch("fixed_tokenizer.json", reinterpret_cast<const uint8_t*>(j.data()), j.size());
    return moeq::Tokenizer::from_files(path, "");
  }();
  if (size == 0) return 0;
  if (data[0] % 2 == 0)
    moeq::fuzz::tokenizer_load_one(data + 1, size - 1);
  else
    moeq::fuzz::tokenizer_encode_one(*fixed, data + 1, size - 1);
  return 0;
}
