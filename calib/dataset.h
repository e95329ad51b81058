#pragma once
// Calibration data: a file (JSONL with `text` or chat `messages`, plain text, or
// pre-tokenized ids as .npy / HDF5 / JSONL of ids) turned into token ids with the model's own
// tokenizer (tokenizer.json), packed into samples of seq_len tokens.
#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace moeq {

struct CalibDataSpec {
  std::string path;        // data file; empty = the embedded default corpus (demo)
  std::string model_dir;   // where tokenizer.json (and tokenizer_config.json) live
  int64_t samples = 512;
  int64_t seq_len = 512;
};

struct CalibTokens {
  at::Tensor ids;            // [samples, seq_len] int64 on the CPU
  std::string description;   // what was read and how (file, format, tokenizer, packing)
};

// Throws moeq::Error naming the file (and line) on unreadable or invalid input, and when the
// data holds fewer tokens than samples x seq_len (the message says how many it holds).
CalibTokens load_calibration_tokens(const CalibDataSpec& spec);

}  // namespace moeq
