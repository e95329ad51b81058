// Calibration data: format detection, tokenization, packing (see dataset.h).
//
// Packing: documents are concatenated in file order and the first samples x seq_len ids are
// cut into rows. A text document is encoded with the tokenizer's post-processor template (BOS
// for Llama/Mistral/Gemma, nothing for Qwen/OLMoE), then the EOS of tokenizer_config.json is
// appended unless the template already ended with it. Pre-tokenized ids are taken as they
// are. Reading stops once enough ids are collected.
#include "calib/dataset.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "calib/data_readers.h"
#include "calib/tokenizer/tokenizer.h"
#include "calib/tokenizer/utf8.h"
#include "core/error.h"
#include "model/config.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

std::string lower_extension(const std::string& path) {
  std::string e = fs::path(path).extension().string();
  for (auto& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return e;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open calibration data '" + path + "'");
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// Line number (1-based) and column (byte, 1-based) of byte offset `at` in `text`.
std::string line_of(const std::string& text, size_t at) {
  size_t line = 1, line_start = 0;
  for (size_t i = 0; i < at && i < text.size(); ++i)
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  return "line " + std::to_string(line) + ", column " + std::to_string(at - line_start + 1);
}

struct Packer {
  int64_t need = 0;
  std::vector<int64_t> ids;
  int64_t documents = 0;
  bool full() const { return static_cast<int64_t>(ids.size()) >= need; }
  void add(const std::vector<int32_t>& d) {
    ids.insert(ids.end(), d.begin(), d.end());
    ++documents;
  }
  void add(const std::vector<int64_t>& d) {
    ids.insert(ids.end(), d.begin(), d.end());
    ++documents;
  }
};

// The model's tokenizer, with the error a user can act on when text cannot be tokenized.
std::unique_ptr<Tokenizer> tokenizer_for(const CalibDataSpec& spec, const std::string& what) {
  const fs::path tj = fs::path(spec.model_dir) / "tokenizer.json";
  if (spec.model_dir.empty() || !fs::exists(tj))
    throw Error(what + " is text, and '" + tj.string() +
                "' does not exist: text needs the model's tokenizer.json; pass pre-tokenized ids (.npy, .h5, JSONL 'input_ids') instead");
  if (!Tokenizer::available())
    throw Error(what + " is text, and this moeq was built without its tokenizer (PCRE2/utf8proc missing: install libpcre2-dev "
                       "libutf8proc-dev and rebuild); pre-tokenized ids (.npy, .h5, JSONL 'input_ids') work without it");
  return Tokenizer::from_model_dir(spec.model_dir);
}

std::vector<int32_t> encode_document(const Tokenizer& tok, const std::string& text) {
  std::vector<int32_t> ids = tok.encode(text, true);
  if (tok.eos_id() && (ids.empty() || ids.back() != *tok.eos_id())) ids.push_back(*tok.eos_id());
  return ids;
}

std::vector<int64_t> ids_of_json(const nlohmann::json& a, const std::string& where) {
  if (!a.is_array()) throw Error(where + ": ids must be a list of integers");
  std::vector<int64_t> out;
  out.reserve(a.size());
  for (size_t k = 0; k < a.size(); ++k) {
    if (!a[k].is_number_integer()) throw Error(where + ": element " + std::to_string(k) + " is not an integer");
    out.push_back(a[k].get<int64_t>());
  }
  return out;
}

// JSONL: one object per line with "text", "messages", "ids" or "input_ids".
std::string read_jsonl(const CalibDataSpec& spec, Packer& p) {
  std::ifstream in(spec.path, std::ios::binary);
  if (!in) throw Error("cannot open calibration data '" + spec.path + "'");
  std::unique_ptr<Tokenizer> tok;
  std::string line, chat_style;
  int64_t lineno = 0, text_docs = 0, chat_docs = 0, id_docs = 0;
  while (!p.full() && std::getline(in, line)) {
    ++lineno;
    const std::string where = spec.path + ":" + std::to_string(lineno);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (const size_t bad = tok::find_invalid_utf8(line); bad != std::string::npos)
      throw Error(where + ": invalid UTF-8 at byte " + std::to_string(bad + 1) + " of the line");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(where + ": not valid JSON (" + std::string(e.what()) + ")");
    }
    if (!j.is_object()) throw Error(where + ": each line must be a JSON object");
    if (j.contains("ids") || j.contains("input_ids")) {
      p.add(ids_of_json(j.contains("input_ids") ? j["input_ids"] : j["ids"], where));
      ++id_docs;
      continue;
    }
    if (!tok) tok = tokenizer_for(spec, where);
    std::string text;
    if (j.contains("text")) {
      if (!j["text"].is_string()) throw Error(where + ": 'text' must be a string");
      text = j["text"].get<std::string>();
      ++text_docs;
    } else if (j.contains("messages")) {
      text = calib_data::messages_to_text(j["messages"], *tok, where, chat_style);
      ++chat_docs;
    } else {
      throw Error(where + ": the object has no 'text', 'messages', 'ids' or 'input_ids' field");
    }
    p.add(encode_document(*tok, text));
  }
  std::ostringstream d;
  d << "JSONL " << spec.path << ": read " << lineno << " lines (" << text_docs << " text, " << chat_docs << " chat, " << id_docs
    << " pre-tokenized documents)" << (p.full() ? ", stopped once enough ids were collected" : "");
  if (chat_docs) d << "; messages written as " << chat_style << ", not through the model's Jinja chat template";
  if (tok) d << "; tokenizer: " << tok->summary();
  return d.str();
}

std::string read_plain_text(const CalibDataSpec& spec, Packer& p) {
  const std::string text = read_all(spec.path);
  if (const size_t bad = tok::find_invalid_utf8(text); bad != std::string::npos)
    throw Error(spec.path + ": invalid UTF-8 at byte offset " + std::to_string(bad) + " (" + line_of(text, bad) + ")");
  const auto tok = tokenizer_for(spec, spec.path);
  p.add(encode_document(*tok, text));
  return "plain text " + spec.path + " (" + std::to_string(text.size()) + " bytes, one document); tokenizer: " + tok->summary();
}

std::string default_corpus(const CalibDataSpec& spec, Packer& p, int64_t vocab_size) {
  const fs::path tj = fs::path(spec.model_dir) / "tokenizer.json";
  if (!spec.model_dir.empty() && fs::exists(tj) && Tokenizer::available()) {
    const auto tok = Tokenizer::from_model_dir(spec.model_dir);
    for (uint64_t n = 0; !p.full(); ++n) p.add(encode_document(*tok, calib_data::demo_document(n)));
    return "embedded synthetic demo corpus (" + std::to_string(p.documents) +
           " documents of shuffled built-in sentences: for demos, not a real calibration set); tokenizer: " + tok->summary();
  }
  if (vocab_size <= 0)
    throw Error("no calibration data given and '" + spec.model_dir + "' has neither tokenizer.json nor config.json vocab_size");
  uint64_t s = 0x5DEECE66DULL;
  for (int64_t i = 0; i < p.need; ++i) {  // splitmix64, seed fixed: the same ids on every run
    uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    p.ids.push_back(static_cast<int64_t>((z ^ (z >> 31)) % static_cast<uint64_t>(vocab_size)));
  }
  p.documents = 1;
  const std::string why = spec.model_dir.empty() || !fs::exists(tj) ? "no tokenizer.json in the model directory"
                                                                      : "moeq built without its tokenizer";
  return "synthetic ids (" + why + "): deterministic pseudo-random ids in [0, " + std::to_string(vocab_size) +
         ") from config.json vocab_size, not text";
}

}  // namespace

CalibTokens load_calibration_tokens(const CalibDataSpec& spec) {
  if (spec.samples <= 0 || spec.seq_len <= 0)
    throw Error("calibration data: samples (" + std::to_string(spec.samples) + ") and seq_len (" + std::to_string(spec.seq_len) +
                ") must be positive");
  int64_t vocab_size = 0;
  if (!spec.model_dir.empty() && fs::exists(fs::path(spec.model_dir) / "config.json"))
    vocab_size = load_config(spec.model_dir).vocab_size;

  Packer p;
  p.need = spec.samples * spec.seq_len;
  std::string what;
  if (spec.path.empty()) {
    what = default_corpus(spec, p, vocab_size);
  } else {
    const std::string ext = lower_extension(spec.path);
    const bool h5 = ext == ".h5" || ext == ".hdf5" || ext == ".hdf" ||
                    (!fs::exists(spec.path) && spec.path.find(".h5:") != std::string::npos);
    if (!h5 && !fs::exists(spec.path)) throw Error("calibration data '" + spec.path + "' does not exist");
    if (ext == ".npy") {
      p.add(calib_data::read_npy_ids(spec.path));
      what = "pre-tokenized ids from " + spec.path + " (.npy)";
    } else if (h5) {
      std::string d;
      p.add(calib_data::read_hdf5_ids(spec.path, d));
      what = "pre-tokenized ids from HDF5 " + d;
    } else if (ext == ".jsonl" || ext == ".json") {
      what = read_jsonl(spec, p);
    } else {
      what = read_plain_text(spec, p);
    }
  }

  const int64_t have = static_cast<int64_t>(p.ids.size());
  if (have < p.need)
    throw Error("calibration data " + (spec.path.empty() ? std::string("(default corpus)") : "'" + spec.path + "'") + " holds " +
                std::to_string(have) + " tokens in " + std::to_string(p.documents) + " documents, fewer than samples x seq_len = " +
                std::to_string(spec.samples) + " x " + std::to_string(spec.seq_len) + " = " + std::to_string(p.need) +
                ": lower --samples or --seq-len, or give more data");
  const int64_t limit = vocab_size > 0 ? vocab_size : -1;
  for (int64_t i = 0; i < p.need; ++i)
    if (p.ids[i] < 0 || (limit > 0 && p.ids[i] >= limit))
      throw Error("calibration data " + spec.path + ": token id " + std::to_string(p.ids[i]) + " at position " + std::to_string(i) +
                  " is outside the model's vocabulary [0, " + std::to_string(limit) + ")");

  CalibTokens out;
  out.ids = at::empty({spec.samples, spec.seq_len}, at::kLong);
  std::copy(p.ids.begin(), p.ids.begin() + p.need, out.ids.data_ptr<int64_t>());
  out.description = what + "; packed " + std::to_string(spec.samples) + " x " + std::to_string(spec.seq_len) + " = " +
                    std::to_string(p.need) + " of " + std::to_string(have) + " tokens" +
                    (p.documents > 1 ? " from " + std::to_string(p.documents) + " documents" : "");
  return out;
}

}  // namespace moeq
