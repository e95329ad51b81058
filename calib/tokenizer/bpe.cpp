#include "calib/tokenizer/bpe.h"

#include <cstdio>
#include <queue>

#include "calib/tokenizer/utf8.h"
#include "core/error.h"

namespace moeq::tok {
namespace {
constexpr size_t kCacheLimit = 200000;  // words; the cache is cleared when it grows past this
constexpr size_t kCacheMaxWordBytes = 256;

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}
}  // namespace

BpeModel::BpeModel(const nlohmann::json& m, bool byte_level, const std::string& where)
    : byte_level_(byte_level), where_(where) {
  if (!m.is_object() || m.value("type", std::string("BPE")) != "BPE")
    throw Error(where + ": model type '" + (m.is_object() ? m.value("type", std::string("?")) : std::string("?")) +
                "' is not implemented by moeq's tokenizer (BPE is)");
  if (m.contains("dropout") && !m["dropout"].is_null() && m["dropout"].get<double>() > 0)
    throw Error(where + ": BPE dropout is not supported (calibration needs deterministic ids)");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(k) && m[k].is_string() && !m[k].get<std::string>().empty())
      throw Error(where + ": BPE '" + k + "' is not supported by moeq's tokenizer");
  byte_fallback_ = m.value("byte_fallback", false);
  fuse_unk_ = m.value("fuse_unk", false);
  ignore_merges_ = m.value("ignore_merges", false);

  const auto& vocab = m.at("vocab");
  vocab_.reserve(vocab.size());
  std::string raw;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const auto id = it.value().get<int32_t>();
    vocab_.emplace(it.key(), id);
    if (byte_level_) {
      if (!byte_level_to_bytes(it.key(), raw)) continue;  // not a byte-level string: only added tokens use it
      raw_vocab_.emplace(raw, id);
    }
  }
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    const auto it = vocab_.find(m["unk_token"].get<std::string>());
    if (it == vocab_.end()) throw Error(where + ": unk_token '" + m["unk_token"].get<std::string>() + "' is not in the vocabulary");
    unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    byte_ids_[b] = -1;
    if (byte_level_) {
      const auto it = raw_vocab_.find(std::string(1, static_cast<char>(b)));
      byte_ids_[b] = it == raw_vocab_.end() ? -1 : it->second;
    }
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    const auto it = vocab_.find(name);
    fallback_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }

  // merges: "left right" strings (older files) or [left, right] pairs
  const auto& merges = m.at("merges");
  merge_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    std::string left, right;
    const auto& e = merges[rank];
    if (e.is_string()) {
      const std::string s = e;
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) throw Error(where + ": merges[" + std::to_string(rank) + "] '" + s + "' is not 'left right'");
      left = s.substr(0, sp);
      right = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2) {
      left = e[0].get<std::string>();
      right = e[1].get<std::string>();
    } else {
      throw Error(where + ": merges[" + std::to_string(rank) + "] is neither a string nor a pair");
    }
    const auto l = vocab_.find(left), r = vocab_.find(right), n = vocab_.find(left + right);
    if (l == vocab_.end() || r == vocab_.end() || n == vocab_.end())
      throw Error(where + ": merges[" + std::to_string(rank) + "] ('" + left + "', '" + right +
                  "') names a token that is not in the vocabulary");
    merge_.emplace(pair_key(l->second, r->second), std::make_pair(static_cast<int32_t>(rank), n->second));
  }
}

int32_t BpeModel::id_of(const std::string& token) const {
  const auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

void BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& ids) const {
  if (byte_level_) {
    for (char c : word) {
      const int32_t id = byte_ids_[static_cast<unsigned char>(c)];
      if (id < 0) throw Error(where_ + ": the byte-level vocabulary has no token for byte " + std::to_string(static_cast<unsigned char>(c)));
      ids.push_back(id);
    }
    return;
  }
  size_t i = 0;
  bool previous_unk = false;
  std::string ch;
  while (i < word.size()) {
    const size_t len = utf8_sequence_length(static_cast<unsigned char>(word[i]));
    ch.assign(word.data() + i, len);
    i += len;
    const auto it = vocab_.find(ch);
    if (it != vocab_.end()) {
      ids.push_back(it->second);
      previous_unk = false;
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : ch) all = all && fallback_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        for (char c : ch) ids.push_back(fallback_ids_[static_cast<unsigned char>(c)]);
        previous_unk = false;
        continue;
      }
    }
    if (unk_id_ < 0)
      throw Error(where_ + ": character '" + ch + "' is not in the vocabulary and the model has no unk_token or byte fallback");
    if (!(fuse_unk_ && previous_unk)) ids.push_back(unk_id_);
    previous_unk = true;
  }
}

// Repeatedly merges the adjacent pair of lowest rank (leftmost on ties). Symbols form a linked
// list; candidate pairs sit in a min-heap and are checked against the list when popped, so
// each merge costs O(log n) instead of a rescan of the word.
void BpeModel::merge_symbols(std::vector<int32_t>& ids) const {
  const int n = static_cast<int>(ids.size());
  if (n < 2) return;
  std::vector<int> next(n), prev(n);
  for (int i = 0; i < n; ++i) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  struct Cand { int32_t rank; int pos; int32_t merged; };
  auto worse = [](const Cand& a, const Cand& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
  auto push = [&](int pos) {
    if (pos < 0 || next[pos] < 0) return;
    const auto it = merge_.find(pair_key(ids[pos], ids[next[pos]]));
    if (it != merge_.end()) heap.push({it->second.first, pos, it->second.second});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  std::vector<char> alive(n, 1);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    if (!alive[c.pos] || next[c.pos] < 0) continue;
    const auto it = merge_.find(pair_key(ids[c.pos], ids[next[c.pos]]));
    if (it == merge_.end() || it->second.first != c.rank || it->second.second != c.merged) continue;  // stale
    const int right = next[c.pos];
    ids[c.pos] = c.merged;
    alive[right] = 0;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  int w = 0;
  for (int i = 0; i >= 0 && i < n; i = next[i]) ids[w++] = ids[i];
  ids.resize(w);
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  std::string key(word);
  if (const auto hit = key.size() <= kCacheMaxWordBytes ? cache_.find(key) : cache_.end(); hit != cache_.end()) {
    out.insert(out.end(), hit->second.begin(), hit->second.end());
    return;
  }
  std::vector<int32_t> ids;
  const auto& whole = byte_level_ ? raw_vocab_ : vocab_;
  if (const auto it = ignore_merges_ ? whole.find(key) : whole.end(); it != whole.end()) {
    ids.push_back(it->second);
  } else {
    initial_symbols(word, ids);
    merge_symbols(ids);
  }
  out.insert(out.end(), ids.begin(), ids.end());
  if (key.size() > kCacheMaxWordBytes) return;  // long words rarely repeat
  if (cache_.size() >= kCacheLimit) cache_.clear();
  cache_.emplace(std::move(key), std::move(ids));
}

}  // namespace moeq::tok
