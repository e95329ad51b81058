#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace moeq {
namespace {

// A header larger than this is not a real checkpoint (the reference reader uses 100 MB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

[[noreturn]] void fail(const std::string& what, const std::string& msg) {
  throw Error(what + ": invalid safetensors file: " + msg);
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

TensorInfo parse_entry(const std::string& what, const std::string& name, const nlohmann::json& j,
                       uint64_t data_size) {
  auto bad = [&](const std::string& msg) { fail(what, "tensor '" + name + "': " + msg); };
  if (!j.is_object()) bad("entry is not a JSON object");
  TensorInfo t;
  t.name = name;
  auto dt = j.find("dtype");
  if (dt == j.end() || !dt->is_string()) bad("missing string 'dtype'");
  if (!parse_dtype(dt->get<std::string>(), &t.dtype)) bad("unknown dtype '" + dt->get<std::string>() + "'");
  auto sh = j.find("shape");
  if (sh == j.end() || !sh->is_array()) bad("missing array 'shape'");
  uint64_t numel = 1;
  for (const auto& d : *sh) {
    if (!d.is_number_unsigned()) bad("shape entries must be non-negative integers");
    uint64_t v = d.get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) bad("shape entry too large");
    if (v != 0 && numel > std::numeric_limits<uint64_t>::max() / v) bad("shape overflows");
    numel *= v;
    t.shape.push_back(static_cast<int64_t>(v));
  }
  auto off = j.find("data_offsets");
  if (off == j.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned())
    bad("'data_offsets' must be two non-negative integers");
  t.begin = (*off)[0].get<uint64_t>();
  t.end = (*off)[1].get<uint64_t>();
  if (t.begin > t.end) bad("data_offsets begin > end");
  if (t.end > data_size)
    bad("data_offsets end " + std::to_string(t.end) + " is past the data area (" + std::to_string(data_size) +
        " bytes): file truncated or header lies");
  const uint64_t esz = dtype_size(t.dtype);
  if (numel > std::numeric_limits<uint64_t>::max() / esz) bad("byte size overflows");
  if (numel * esz != t.end - t.begin)
    bad("shape x dtype is " + std::to_string(numel * esz) + " bytes but data_offsets span " +
        std::to_string(t.end - t.begin));
  return t;
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t available, uint64_t file_size,
                                           const std::string& what) {
  if (file_size < 8 || available < 8) fail(what, "file is shorter than the 8-byte header length");
  const uint64_t n = read_u64_le(bytes);
  if (n > kMaxHeaderBytes) fail(what, "header length " + std::to_string(n) + " is implausibly large");
  if (n > file_size - 8) fail(what, "header length " + std::to_string(n) + " runs past the end of the file");
  if (n > available - 8) fail(what, "header not fully available");
  SafetensorsHeader h;
  h.data_start = 8 + n;
  const uint64_t data_size = file_size - h.data_start;
  nlohmann::json j = nlohmann::json::parse(bytes + 8, bytes + 8 + n, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail(what, "header is not valid JSON");
  if (!j.is_object()) fail(what, "header is not a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) fail(what, "__metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) fail(what, "__metadata__ value for '" + m.key() + "' is not a string");
        h.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    h.tensors.push_back(parse_entry(what, it.key(), *it, data_size));
  }
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < h.tensors.size(); ++i) {
    const auto& prev = h.tensors[i - 1];
    const auto& cur = h.tensors[i];
    if (cur.begin < prev.end)
      fail(what, "tensors '" + prev.name + "' and '" + cur.name + "' overlap in the data area");
  }
  return h;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto f = std::shared_ptr<SafetensorsFile>(new SafetensorsFile());
  f->map_ = MappedFile::open(path);
  f->header_ = parse_safetensors_header(f->map_->data(), f->map_->size(), f->map_->size(), path);
  for (size_t i = 0; i < f->header_.tensors.size(); ++i) f->by_name_[f->header_.tensors[i].name] = i;
  return f;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &header_.tensors[it->second];
}

}  // namespace moeq
