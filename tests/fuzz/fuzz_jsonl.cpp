// libFuzzer target (cmake -DMOEQ_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++; ASan + UBSan):
//   ./fuzz_jsonl -max_total_time=60 corpus/
// The text lines go through a byte-level tokenizer written at start-up (tokenizer_json.h).
#include "fuzz/jsonl_body.h"
#include "fuzz/tokenizer_json.h"

namespace {
std::string model_dir;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  model_dir = moeq::fuzz::scratch_dir() + "/model";
  std::filesystem::create_directories(model_dir);
  std::ofstream(model_dir + "/tokenizer.json") << moeq::fuzz::byte_level_tokenizer_json();
  std::ofstream(model_dir + "/config.json") << R"({"model_type": "qwen3_moe", "vocab_size": 300})";
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  moeq::fuzz::jsonl_one(data, size, model_dir);
  return 0;
}
