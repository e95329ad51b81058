#pragma once
// Helpers of the calibration data tests: model directories, specs, .npy bytes, rows.
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "calib/dataset.h"
#include "tests/calib/tokenizer_test_util.h"

namespace moeq::test {

using Rows = std::vector<std::vector<int64_t>>;

inline Rows rows_of(const at::Tensor& t) {
  REQUIRE(t.dim() == 2);
  REQUIRE(t.scalar_type() == at::kLong);
  Rows r(t.size(0));
  for (int64_t i = 0; i < t.size(0); ++i)
    for (int64_t j = 0; j < t.size(1); ++j) r[i].push_back(t[i][j].item<int64_t>());
  return r;
}

// A model directory: config.json (vocab_size) and, optionally, the byte tokenizer.
inline std::string model_dir(const TempDir& d, bool with_tokenizer, int64_t vocab = 300) {
  write_file(d.path + "/config.json",
             nlohmann::json{{"model_type", "qwen3_moe"}, {"num_hidden_layers", 1}, {"hidden_size", 8}, {"vocab_size", vocab}}.dump());
  if (with_tokenizer) moeq::test::write_model_dir(d.path, moeq::test::byte_tokenizer_json(), {{"eos_token", "<|endoftext|>"}});
  return d.path;
}

inline CalibDataSpec spec(const std::string& path, const std::string& dir, int64_t samples, int64_t seq_len) {
  CalibDataSpec s;
  s.path = path;
  s.model_dir = dir;
  s.samples = samples;
  s.seq_len = seq_len;
  return s;
}

inline std::string npy(const std::string& descr, const std::string& shape, const void* data, size_t bytes, bool fortran = false) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") + ", 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xFF);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  out.append(static_cast<const char*>(data), bytes);
  return out;
}


}  // namespace moeq::test
