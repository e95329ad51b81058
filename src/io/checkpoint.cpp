#include "io/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace fs = std::filesystem;

namespace moeq {

std::shared_ptr<Checkpoint> Checkpoint::open(const std::string& dir) {
  if (!fs::is_directory(dir)) throw Error(dir + ": not a checkpoint directory");
  auto ck = std::shared_ptr<Checkpoint>(new Checkpoint());
  ck->dir_ = dir;
  const std::string index_path = dir + "/model.safetensors.index.json";
  std::vector<std::string> shard_files;
  std::map<std::string, std::string> weight_map;
  if (fs::exists(index_path)) {
    std::ifstream in(index_path);
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw Error(index_path + ": not valid JSON");
    auto wm = j.find("weight_map");
    if (wm == j.end() || !wm->is_object()) throw Error(index_path + ": missing object 'weight_map'");
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it->is_string()) throw Error(index_path + ": weight_map entry '" + it.key() + "' is not a file name");
      const std::string f = it->get<std::string>();
      if (f.find('/') != std::string::npos || f == "..")
        throw Error(index_path + ": weight_map entry '" + it.key() + "' points outside the checkpoint: " + f);
      weight_map[it.key()] = f;
      if (std::find(shard_files.begin(), shard_files.end(), f) == shard_files.end()) shard_files.push_back(f);
    }
  } else {
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().extension() == ".safetensors") shard_files.push_back(e.path().filename());
    std::sort(shard_files.begin(), shard_files.end());
    if (shard_files.empty()) throw Error(dir + ": no *.safetensors file and no model.safetensors.index.json");
  }
  for (const auto& f : shard_files) ck->add_file(SafetensorsFile::open(dir + "/" + f));
  for (const auto& [name, file] : weight_map) {
    auto it = ck->where_.find(name);
    if (it == ck->where_.end() || ck->files_[it->second.file]->path() != dir + "/" + file)
      throw Error(index_path + ": weight_map says tensor '" + name + "' is in " + file + ", but it is not there");
  }
  std::sort(ck->names_.begin(), ck->names_.end());
  return ck;
}

std::shared_ptr<Checkpoint> Checkpoint::open_file(const std::string& path) {
  auto ck = std::shared_ptr<Checkpoint>(new Checkpoint());
  ck->dir_ = path;
  ck->add_file(SafetensorsFile::open(path));
  std::sort(ck->names_.begin(), ck->names_.end());
  return ck;
}

void Checkpoint::add_file(std::shared_ptr<SafetensorsFile> f) {
  files_.push_back(std::move(f));
  const size_t fi = files_.size() - 1;
  for (const auto& t : files_.back()->tensors()) {
    auto [it, fresh] = where_.emplace(t.name, Where{fi, &t});
    if (!fresh)
      throw Error(dir_ + ": tensor '" + t.name + "' is stored twice (" + files_[it->second.file]->path() + " and " +
                  files_[fi]->path() + ")");
    names_.push_back(t.name);
  }
}

const Checkpoint::Where& Checkpoint::where(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error(dir_ + ": no tensor named '" + name + "'");
  return it->second;
}

const TensorInfo& Checkpoint::info(const std::string& name) const { return *where(name).info; }
const uint8_t* Checkpoint::data(const std::string& name) const {
  const auto& w = where(name);
  return files_[w.file]->data(*w.info);
}
const SafetensorsFile& Checkpoint::file_of(const std::string& name) const { return *files_[where(name).file]; }

uint64_t Checkpoint::total_bytes() const {
  uint64_t n = 0;
  for (const auto& [name, w] : where_) n += w.info->nbytes();
  return n;
}

}  // namespace moeq
