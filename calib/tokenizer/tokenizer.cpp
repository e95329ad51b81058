#include "calib/tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "calib/tokenizer/added_tokens.h"
#include "calib/tokenizer/bpe.h"
#include "calib/tokenizer/normalizer.h"
#include "calib/tokenizer/pre_tokenizer.h"
#include "calib/tokenizer/utf8.h"
#include "core/error.h"

namespace moeq {
namespace {

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open '" + path + "'");
  const std::string text((std::istreambuf_iterator<char>(in)), {});  // parsing a string beats a stream
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error("'" + path + "' is not valid JSON: " + e.what());
  }
}

// tokenizer_config.json writes a token as a string or as {"content": ...}.
std::optional<std::string> token_text(const nlohmann::json& cfg, const char* key) {
  if (!cfg.contains(key)) return std::nullopt;
  const auto& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

// The ids a post-processor puts before and after a single sequence.
void template_of(const nlohmann::json& pp, const std::string& where, std::vector<int32_t>& prefix,
                 std::vector<int32_t>& suffix) {
  if (pp.is_null()) return;
  const std::string type = pp.value("type", std::string());
  if (type == "ByteLevel") return;  // offsets only
  if (type == "Sequence") {
    for (size_t i = 0; i < pp.at("processors").size(); ++i)
      template_of(pp["processors"][i], where + ".processors[" + std::to_string(i) + "]", prefix, suffix);
    return;
  }
  if (type == "TemplateProcessing") {
    const auto& specials = pp.at("special_tokens");
    bool after = false;
    std::vector<int32_t> pre, post;
    for (const auto& item : pp.at("single")) {
      if (item.contains("Sequence")) {
        after = true;
        continue;
      }
      const std::string name = item.at("SpecialToken").at("id").get<std::string>();
      if (!specials.contains(name)) throw Error(where + ": template names special token '" + name + "' without ids");
      for (const auto& id : specials[name].at("ids")) (after ? post : pre).push_back(id.get<int32_t>());
    }
    prefix.insert(prefix.end(), pre.begin(), pre.end());
    suffix.insert(suffix.begin(), post.begin(), post.end());
    return;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    prefix.push_back(pp.at("cls").at(1).get<int32_t>());
    suffix.insert(suffix.begin(), pp.at("sep").at(1).get<int32_t>());
    return;
  }
  throw Error(where + ": post_processor type '" + type + "' is not implemented by moeq's tokenizer");
}

std::string type_of(const nlohmann::json& j) {
  if (j.is_null()) return "none";
  std::string t = j.value("type", std::string("?"));
  if (t == "Sequence") {
    const char* key = j.contains("normalizers") ? "normalizers" : "pretokenizers";
    t += "[";
    for (size_t i = 0; i < j[key].size(); ++i) t += (i ? "," : "") + type_of(j[key][i]);
    t += "]";
  }
  return t;
}

}  // namespace

bool Tokenizer::available() {
#ifdef MOEQ_WITH_TOKENIZER
  return true;
#else
  return false;
#endif
}

Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::from_model_dir(const std::string& model_dir) {
  return from_files((std::filesystem::path(model_dir) / "tokenizer.json").string(),
                    (std::filesystem::path(model_dir) / "tokenizer_config.json").string());
}

std::unique_ptr<Tokenizer> Tokenizer::from_files(const std::string& tokenizer_json, const std::string& config_json) {
  if (!available())
    throw Error("moeq was built without PCRE2/utf8proc (libpcre2-dev, libutf8proc-dev), so it cannot tokenize text for '" +
                tokenizer_json + "': install them and rebuild, or pass pre-tokenized ids (.npy, .h5, JSONL with 'input_ids')");
  const nlohmann::json j = read_json(tokenizer_json);
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->path_ = tokenizer_json;
  try {
    const std::string& w = tokenizer_json;
    tok::PreTokenizerInfo info;
    t->normalizer_ = tok::make_normalizer(j.value("normalizer", nlohmann::json()), w + ": normalizer");
    t->pre_tokenizer_ = tok::make_pre_tokenizer(j.value("pre_tokenizer", nlohmann::json()), w + ": pre_tokenizer", info);
    t->model_ = std::make_unique<tok::BpeModel>(j.at("model"), info.byte_level, w + ": model");
    t->max_id_ = t->model_->vocab_size() - 1;

    t->added_raw_ = std::make_unique<tok::AddedTokens>();
    t->added_normalized_ = std::make_unique<tok::AddedTokens>();
    for (const auto& a : j.value("added_tokens", nlohmann::json::array())) {
      tok::AddedToken at;
      at.content = a.at("content").get<std::string>();
      at.id = a.at("id").get<int32_t>();
      at.lstrip = a.value("lstrip", false);
      at.rstrip = a.value("rstrip", false);
      at.single_word = a.value("single_word", false);
      t->max_id_ = std::max<int64_t>(t->max_id_, at.id);
      // tokenizers matches a normalized token's normalized content in normalized text
      if (a.value("normalized", !a.value("special", false))) {
        if (t->normalizer_) t->normalizer_->apply(at.content);
        t->added_normalized_->add(at);
      } else {
        t->added_raw_->add(at);
      }
    }
    template_of(j.value("post_processor", nlohmann::json()), w + ": post_processor", t->prefix_, t->suffix_);

    std::string bos_eos;
    if (!config_json.empty() && std::filesystem::exists(config_json)) {
      const nlohmann::json cfg = read_json(config_json);
      for (auto [key, slot] : {std::pair<const char*, std::optional<int32_t>*>{"bos_token", &t->bos_id_}, {"eos_token", &t->eos_id_}}) {
        if (const auto text = token_text(cfg, key)) {
          const int32_t id = t->token_id(*text);
          if (id < 0) throw Error(config_json + ": " + key + " '" + *text + "' is not a token of " + tokenizer_json);
          *slot = id;
        }
      }
      bos_eos = " (BOS/EOS from tokenizer_config.json)";
    } else {
      bos_eos = " (no tokenizer_config.json: no EOS between documents)";
    }

    std::ostringstream s;
    s << (info.byte_level ? "byte-level BPE" : t->model_->byte_fallback() ? "BPE with byte fallback" : "BPE") << ", "
      << (t->max_id_ + 1) << " ids, " << t->model_->merges() << " merges, normalizer " << type_of(j.value("normalizer", nlohmann::json()))
      << ", pre-tokenizer " << type_of(j.value("pre_tokenizer", nlohmann::json())) << ", "
      << (t->added_raw_->tokens.size() + t->added_normalized_->tokens.size()) << " added tokens, template +" << t->prefix_.size()
      << "/+" << t->suffix_.size() << ", BOS " << (t->bos_id_ ? std::to_string(*t->bos_id_) : "none") << ", EOS "
      << (t->eos_id_ ? std::to_string(*t->eos_id_) : "none") << bos_eos;
    t->summary_ = s.str();
  } catch (const nlohmann::json::exception& e) {
    throw Error(tokenizer_json + ": unexpected layout: " + e.what());
  }
  return t;
}

int32_t Tokenizer::token_id(const std::string& token) const {
  for (const auto* a : {added_raw_.get(), added_normalized_.get()})
    for (const auto& t : a->tokens)
      if (t.content == token) return t.id;
  return model_->id_of(token);
}

int64_t Tokenizer::vocab_size() const { return max_id_ + 1; }

void Tokenizer::encode_segment(std::string text, bool at_start, std::vector<int32_t>& out) const {
  if (normalizer_) normalizer_->apply(text);
  std::vector<tok::Piece> pieces;
  if (added_normalized_->empty()) {
    pieces.push_back({std::move(text), at_start});
  } else {
    for (const auto& sp : added_normalized_->split(text)) {
      if (sp.id >= 0) {  // flush what came before, then the token
        if (pre_tokenizer_) pre_tokenizer_->apply(pieces);
        for (const auto& p : pieces) model_->encode_word(p.text, out);
        pieces.clear();
        out.push_back(sp.id);
      } else {
        pieces.push_back({text.substr(sp.begin, sp.end - sp.begin), at_start && sp.begin == 0});
      }
    }
  }
  if (pre_tokenizer_) pre_tokenizer_->apply(pieces);
  for (const auto& p : pieces) model_->encode_word(p.text, out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  if (const size_t bad = tok::find_invalid_utf8(text); bad != std::string_view::npos)
    throw Error("text to tokenize is not valid UTF-8 at byte offset " + std::to_string(bad));
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special_tokens) out.insert(out.end(), prefix_.begin(), prefix_.end());
  for (const auto& sp : added_raw_->split(text)) {
    if (sp.id >= 0) out.push_back(sp.id);
    else encode_segment(std::string(text.substr(sp.begin, sp.end - sp.begin)), sp.begin == 0, out);
  }
  if (add_special_tokens) out.insert(out.end(), suffix_.begin(), suffix_.end());
  return out;
}

}  // namespace moeq
