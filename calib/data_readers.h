#pragma once
// Readers behind load_calibration_tokens (calib/dataset.cpp): pre-tokenized id files, chat
// messages turned into text, and the embedded demo corpus.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moeq {
class Tokenizer;

namespace calib_data {

// A .npy array of integers (int16/32/64, uint16/32; C order; any shape), flattened.
std::vector<int64_t> read_npy_ids(const std::string& path);

// An integer dataset of an HDF5 file, flattened. `spec` is FILE or FILE:DATASET; without a
// dataset name, input_ids, ids or tokens is used, or the file's only root dataset.
// `description` receives "FILE:DATASET [dims]".
std::vector<int64_t> read_hdf5_ids(const std::string& spec, std::string& description);
bool hdf5_available();

// Chat messages ([{role, content}], content a string or a list of {type: text, text}) as one
// text. moeq does not render the model's Jinja chat template: it writes ChatML when the
// tokenizer has <|im_start|>/<|im_end|> (Qwen, OLMoE-Instruct style), Gemma turns when it has
// <start_of_turn>/<end_of_turn>, and "role: content" lines otherwise. `style` names the one
// used; `where` ("FILE:LINE") prefixes errors.
std::string messages_to_text(const nlohmann::json& messages, const Tokenizer& tok, const std::string& where,
                             std::string& style);

// The n-th synthetic demo document (deterministic): sentences of an embedded English/code/
// multilingual pool in a pseudo-random order.
std::string demo_document(uint64_t n);

}  // namespace calib_data
}  // namespace moeq
