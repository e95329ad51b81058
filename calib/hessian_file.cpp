#include "calib/hessian_file.h"

#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tensor/aten_view.h"

namespace moeq {

std::string hessian_path_for(const std::string& calib_path) {
  std::filesystem::path p(calib_path);
  if (p.has_extension()) p.replace_extension();
  return p.string() + ".hessians.safetensors";
}

std::string hessian_tensor_name(int64_t layer, const std::string& input, const std::string& what) {
  return "layers." + std::to_string(layer) + ".experts." + input + "." + what;
}

std::string hessian_linear_tensor_name(const std::string& site, const std::string& what) {
  return "linears." + site + "." + what;
}

std::shared_ptr<const HessianFile> HessianFile::open(const std::string& path, const std::string& model_fingerprint) {
  if (!std::filesystem::exists(path))
    throw Error(path + ": no GPTQ Hessians (calibrator: gptq needs them): run moeq calibrate with --gptq-hessians, "
                "which writes them beside the calibration file");
  auto h = std::shared_ptr<HessianFile>(new HessianFile());
  h->file_ = SafetensorsFile::open(path);
  const auto& m = h->file_->metadata();
  auto it = m.find("format");
  if (it == m.end() || it->second != "moeq-gptq-hessians")
    throw Error(path + ": not a moeq GPTQ Hessian file (metadata format is not moeq-gptq-hessians)");
  auto fp = m.find("model_fingerprint");
  if (fp == m.end() || fp->second != model_fingerprint)
    throw Error(path + ": the Hessians were made for another model (fingerprint " + (fp == m.end() ? "missing" : fp->second) +
                ", this model " + model_fingerprint + "); re-run moeq calibrate --gptq-hessians on this model");
  auto v = m.find("version");
  if (v != m.end()) {
    try {
      h->version_ = std::stoi(v->second);
    } catch (const std::exception&) {
      throw Error(path + ": metadata version '" + v->second + "' is not a number");
    }
    if (h->version_ < 1 || h->version_ > kHessianFileVersion)
      throw Error(path + ": GPTQ Hessian file version " + v->second + " (this moeq reads 1 to " + std::to_string(kHessianFileVersion) +
                  "); re-run moeq calibrate --gptq-hessians");
  }
  if (h->version_ >= 2) {
    auto li = m.find("linear_inputs");
    if (li == m.end()) throw Error(path + ": version " + v->second + " file without linear_inputs metadata");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(li->second);
    } catch (const std::exception& e) {
      throw Error(path + ": metadata linear_inputs is not JSON: " + e.what());
    }
    if (!j.is_object()) throw Error(path + ": metadata linear_inputs is not a JSON object");
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!it.value().is_string()) throw Error(path + ": metadata linear_inputs[" + it.key() + "] is not a string");
      h->linear_inputs_[it.key()] = it.value().get<std::string>();
    }
  }
  return h;
}

at::Tensor HessianFile::load(const std::string& name, DType want) const {
  const TensorInfo* t = file_->find(name);
  if (!t) throw Error(path() + ": no tensor " + name + " (the calibration forward reported no input for it)");
  if (t->dtype != want) throw Error(path() + ": tensor " + name + " has dtype " + dtype_name(t->dtype) + ", expected " + dtype_name(want));
  at::Tensor v = at::from_blob(const_cast<uint8_t*>(file_->data(*t)), t->shape, at::TensorOptions().dtype(to_scalar_type(want)));
  return v.clone();  // off the mapping: the caller may keep or modify it
}

at::Tensor HessianFile::hessian(int64_t layer, const std::string& input) const {
  return load(hessian_tensor_name(layer, input, "hessian"), DType::F32);
}

at::Tensor HessianFile::tokens(int64_t layer, const std::string& input) const {
  return load(hessian_tensor_name(layer, input, "tokens"), DType::I64);
}

const std::string& HessianFile::linear_key(const std::string& site) const {
  auto it = linear_inputs_.find(site);
  if (it == linear_inputs_.end())
    throw Error(path() + ": no Hessian for " + site + (version_ < 2 ? " (a version 1 file: routed experts only; re-run moeq calibrate --gptq-hessians)"
                                                                    : " (the calibration forward did not report its input)"));
  return it->second;
}

at::Tensor HessianFile::linear_hessian(const std::string& site) const {
  return load(hessian_linear_tensor_name(linear_key(site), "hessian"), DType::F32);
}

int64_t HessianFile::linear_tokens(const std::string& site) const {
  return load(hessian_linear_tensor_name(linear_key(site), "tokens"), DType::I64).item<int64_t>();
}

void HessianFile::note_fallback(const std::string& line) const {
  std::lock_guard<std::mutex> lk(mu_);
  fallbacks_.push_back(line);
}

std::vector<std::string> HessianFile::fallbacks() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<std::string> out;  // compare quantizes a job more than once: each line once
  for (const auto& l : fallbacks_)
    if (std::find(out.begin(), out.end(), l) == out.end()) out.push_back(l);
  return out;
}

}  // namespace moeq
