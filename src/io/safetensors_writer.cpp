#include "io/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/text_file.h"

namespace fs = std::filesystem;

namespace moeq {

uint64_t TensorSpec::nbytes() const {
  uint64_t n = dtype_size(dtype);
  for (auto d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

namespace {

void pwrite_all(int fd, const void* data, uint64_t n, uint64_t off, const std::string& file) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n > (1u << 30) ? (1u << 30) : n, static_cast<off_t>(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw Error(file + ": write failed: " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<uint64_t>(w);
    off += static_cast<uint64_t>(w);
  }
}

std::string shard_name(size_t k, size_t n) {
  if (n == 1) return "model.safetensors";
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", k + 1, n);
  return buf;
}

}  // namespace

SafetensorsWriter::SafetensorsWriter(std::string dir, std::vector<TensorSpec> specs, uint64_t max_shard_bytes,
                                     std::map<std::string, std::string> metadata)
    : dir_(std::move(dir)), specs_(std::move(specs)) {
  // Plan: assign each tensor a shard and an offset inside that shard's data area.
  std::vector<std::vector<size_t>> members;
  uint64_t cur = 0;
  for (size_t i = 0; i < specs_.size(); ++i) {
    const auto& s = specs_[i];
    if (slots_.count(s.name)) throw Error("safetensors writer: tensor '" + s.name + "' given twice");
    const uint64_t nb = s.nbytes();
    if (members.empty() || (cur > 0 && cur + nb > max_shard_bytes)) {
      members.emplace_back();
      cur = 0;
    }
    slots_[s.name] = Slot{members.size() - 1, cur, nb};
    members.back().push_back(i);
    cur += nb;
  }
  if (members.empty()) members.emplace_back();
  shards_.resize(members.size());
  for (size_t k = 0; k < members.size(); ++k) {
    Shard& sh = shards_[k];
    sh.file = shard_name(k, members.size());
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    for (size_t i : members[k]) {
      const auto& s = specs_[i];
      const Slot& sl = slots_[s.name];
      header[s.name] = {{"dtype", dtype_name(s.dtype)}, {"shape", s.shape}, {"data_offsets", {sl.offset, sl.offset + sl.nbytes}}};
      sh.bytes += sl.nbytes;
    }
    std::string h = header.dump();
    h.append((8 - h.size() % 8) % 8, ' ');  // pad so the data area starts 8-byte aligned
    sh.data_start = 8 + h.size();
    const std::string path = dir_ + "/" + sh.file;
    sh.fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (sh.fd < 0) throw Error(path + ": cannot create: " + std::strerror(errno));
    uint8_t len[8];
    for (int b = 0; b < 8; ++b) len[b] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * b));
    pwrite_all(sh.fd, len, 8, 0, path);
    pwrite_all(sh.fd, h.data(), h.size(), 8, path);
    if (::ftruncate(sh.fd, static_cast<off_t>(sh.data_start + sh.bytes)) != 0)
      throw Error(path + ": cannot size file: " + std::strerror(errno));
  }
}

SafetensorsWriter::~SafetensorsWriter() {
  for (auto& sh : shards_)
    if (sh.fd >= 0) ::close(sh.fd);
}

void SafetensorsWriter::write(const std::string& name, const void* data, uint64_t nbytes) {
  Slot* slot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = slots_.find(name);
    if (it == slots_.end()) throw Error("safetensors writer: tensor '" + name + "' was not planned");
    slot = &it->second;
    if (slot->written) throw Error("safetensors writer: tensor '" + name + "' written twice");
    if (nbytes != slot->nbytes)
      throw Error("safetensors writer: tensor '" + name + "' has " + std::to_string(nbytes) + " bytes, planned " +
                  std::to_string(slot->nbytes));
    slot->written = true;
  }
  const Shard& sh = shards_[slot->shard];
  pwrite_all(sh.fd, data, nbytes, sh.data_start + slot->offset, dir_ + "/" + sh.file);
}

void SafetensorsWriter::finish() {
  if (finished_) return;
  for (const auto& s : specs_)
    if (!slots_[s.name].written) throw Error("safetensors writer: tensor '" + s.name + "' was never written");
  for (auto& sh : shards_) {
    if (::fsync(sh.fd) != 0 || ::close(sh.fd) != 0)
      throw Error(dir_ + "/" + sh.file + ": flush failed: " + std::strerror(errno));
    sh.fd = -1;
  }
  if (shards_.size() > 1) {
    nlohmann::ordered_json idx;
    uint64_t total = 0;
    for (const auto& sh : shards_) total += sh.bytes;
    idx["metadata"] = {{"total_size", total}};
    nlohmann::ordered_json wm = nlohmann::ordered_json::object();
    for (const auto& s : specs_) wm[s.name] = shards_[slots_[s.name].shard].file;
    idx["weight_map"] = wm;
    write_text_file(dir_ + "/model.safetensors.index.json", idx.dump(2) + "\n");
  }
  finished_ = true;
}

std::vector<std::string> SafetensorsWriter::files() const {
  std::vector<std::string> f;
  for (const auto& sh : shards_) f.push_back(sh.file);
  return f;
}

}  // namespace moeq
