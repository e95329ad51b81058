#include "calib/hessian_observer.h"

#include <unistd.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors_writer.h"
#include "calib/hessian_file.h"

namespace moeq {

void HessianObserver::to_host_except(int64_t layer) {
  if (layer == device_layer_) return;
  for (auto& [key, a] : acc_)
    if (key.first != layer && a.sum.device().is_cuda()) a.sum = a.sum.to(at::kCPU);
  for (auto& [key, a] : linear_)
    if (a.layer != layer && a.sum.device().is_cuda()) a.sum = a.sum.to(at::kCPU);
  device_layer_ = layer;
}

void HessianObserver::linear_input(const std::vector<const Site*>& sites, const at::Tensor& x_in) {
  if (next_) next_->linear_input(sites, x_in);
  std::vector<const Site*> own;  // routers are not quantized with GPTQ; experts come through expert_input
  for (const Site* s : sites)
    if (s->role != Role::Router && s->role != Role::Expert) own.push_back(s);
  if (own.empty()) return;
  const std::string key = own[0]->name;
  for (const Site* s : own) {
    auto [it, fresh] = input_of_.emplace(s->name, key);
    if (!fresh && it->second != key)
      throw Error("gptq hessians: the forward reported the input of " + s->name + " with " + key + " after reporting it with " +
                  it->second);
  }
  to_host_except(own[0]->layer);
  const at::Tensor x = x_in.dim() == 2 ? x_in : x_in.reshape({-1, x_in.size(-1)});
  LinearAcc& a = linear_[key];
  if (!a.sum.defined()) {
    a.sum = at::zeros({x.size(1), x.size(1)}, x.options().dtype(at::kFloat));
    a.layer = own[0]->layer;
    for (const Site* s : own) a.sites.push_back(s->name);
  }
  if (a.sum.size(0) != x.size(1))
    throw Error("gptq hessians: " + key + ": the forward reported an input of " + std::to_string(x.size(1)) + " features after " +
                std::to_string(a.sum.size(0)));
  if (a.sum.device() != x.device()) a.sum = a.sum.to(x.device());
  const at::Tensor xf = x.to(at::kFloat);
  a.sum.addmm_(xf.t(), xf, /*beta=*/1, /*alpha=*/2);
  a.rows += x.size(0);
}

void HessianObserver::router(int64_t layer, const at::Tensor& topk_ids, const at::Tensor& topk_weights) {
  if (next_) next_->router(layer, topk_ids, topk_weights);
}

void HessianObserver::expert_input(int64_t layer, const std::string& proj, const at::Tensor& x_in,
                                   const at::Tensor& expert_of_row, const at::Tensor& counts) {
  if (next_) next_->expert_input(layer, proj, x_in, expert_of_row, counts);
  if (proj != "gate_up" && proj != "down")
    throw Error("gptq hessians: the forward reported expert input '" + proj + "' of layer " + std::to_string(layer) +
                " (expected gate_up or down)");
  to_host_except(layer);  // earlier layers are complete: to the host
  const at::Tensor x = x_in.dim() == 2 ? x_in : x_in.reshape({-1, x_in.size(-1)});
  const int64_t E = counts.size(0), in = x.size(1);
  Acc& a = acc_[{layer, proj}];
  if (!a.sum.defined()) {
    a.sum = at::zeros({E, in, in}, x.options().dtype(at::kFloat));
    a.rows.assign(E, 0);
  }
  if (a.sum.device() != x.device()) a.sum = a.sum.to(x.device());
  if (a.sum.size(0) != E || a.sum.size(1) != in)
    throw Error("gptq hessians: layer " + std::to_string(layer) + " " + proj + ": the forward reported " + std::to_string(E) +
                " experts x " + std::to_string(in) + " inputs after " + std::to_string(a.sum.size(0)) + " x " +
                std::to_string(a.sum.size(1)));
  const at::Tensor c = counts.to(at::kCPU, at::kLong).contiguous();
  const int64_t* n = c.data_ptr<int64_t>();
  int64_t off = 0;
  for (int64_t e = 0; e < E; ++e) {
    if (n[e] > 0) {
      const at::Tensor xe = x.narrow(0, off, n[e]).to(at::kFloat);
      a.sum.select(0, e).addmm_(xe.t(), xe, /*beta=*/1, /*alpha=*/2);
    }
    a.rows[e] += n[e];
    off += n[e];
  }
  if (off != x.size(0))
    throw Error("gptq hessians: layer " + std::to_string(layer) + " " + proj + ": counts add up to " + std::to_string(off) +
                " rows, the input has " + std::to_string(x.size(0)));
}

std::pair<at::Tensor, std::vector<int64_t>> HessianObserver::sums(int64_t layer, const std::string& input) const {
  auto it = acc_.find({layer, input});
  if (it == acc_.end()) throw Error("gptq hessians: no input " + input + " of layer " + std::to_string(layer) + " was reported");
  return {it->second.sum.to(at::kCPU), it->second.rows};
}

std::pair<at::Tensor, int64_t> HessianObserver::linear_sums(const std::string& site) const {
  auto k = input_of_.find(site);
  if (k == input_of_.end()) throw Error("gptq hessians: the input of " + site + " was not reported");
  const LinearAcc& a = linear_.at(k->second);
  return {a.sum.to(at::kCPU), a.rows};
}

void HessianObserver::write(const std::string& path, const std::string& model_fingerprint) const {
  if (acc_.empty() && linear_.empty())
    throw Error(path + ": the calibration forward reported no linear or routed-expert input: no GPTQ Hessians to write");
  std::vector<TensorSpec> specs;
  std::vector<std::pair<std::string, at::Tensor>> data;
  for (const auto& [key, a] : acc_) {
    const int64_t E = a.sum.size(0), in = a.sum.size(1);
    at::Tensor rows = at::tensor(a.rows, at::kLong);
    at::Tensor h = a.sum.to(at::kCPU).clone();
    for (int64_t e = 0; e < E; ++e)
      if (a.rows[e] > 0) h.select(0, e).div_(static_cast<double>(a.rows[e]));
    if (!at::isfinite(h).all().item<bool>())
      throw Error(path + ": the GPTQ Hessian of layer " + std::to_string(key.first) + " (" + key.second +
                  ") holds NaN or Inf: the model or the data produce non-finite activations");
    const std::string hn = hessian_tensor_name(key.first, key.second, "hessian");
    const std::string tn = hessian_tensor_name(key.first, key.second, "tokens");
    specs.push_back({hn, DType::F32, {E, in, in}});
    specs.push_back({tn, DType::I64, {E}});
    data.emplace_back(hn, h.contiguous());
    data.emplace_back(tn, rows);
  }
  nlohmann::json inputs = nlohmann::json::object();  // site -> the linear_ key whose Hessian it reads
  for (const auto& [key, a] : linear_) {
    if (a.rows <= 0) continue;
    at::Tensor h = a.sum.to(at::kCPU).clone().div_(static_cast<double>(a.rows));
    if (!at::isfinite(h).all().item<bool>())
      throw Error(path + ": the GPTQ Hessian of the input of " + key + " holds NaN or Inf: the model or the data produce "
                  "non-finite activations");
    const std::string hn = hessian_linear_tensor_name(key, "hessian");
    const std::string tn = hessian_linear_tensor_name(key, "tokens");
    specs.push_back({hn, DType::F32, {h.size(0), h.size(1)}});
    specs.push_back({tn, DType::I64, {1}});
    data.emplace_back(hn, h.contiguous());
    data.emplace_back(tn, at::tensor(std::vector<int64_t>{a.rows}, at::kLong));
    for (const auto& s : a.sites) inputs[s] = key;
  }
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  std::error_code ec;
  std::filesystem::remove_all(tmp, ec);
  std::filesystem::create_directories(tmp);
  try {
    SafetensorsWriter w(tmp, specs, ~0ull,
                        {{"format", "moeq-gptq-hessians"}, {"version", std::to_string(kHessianFileVersion)},
                         {"model_fingerprint", model_fingerprint},
                         {"hessian", "2/n X^T X over the rows routed to each expert, or over all rows of a linear's input (float32)"},
                         {"linear_inputs", inputs.dump()}});
    for (const auto& [name, t] : data) w.write(name, t.data_ptr(), t.nbytes());
    w.finish();
    std::filesystem::rename(tmp + "/model.safetensors", path);
  } catch (...) {
    std::filesystem::remove_all(tmp, ec);
    throw;
  }
  std::filesystem::remove_all(tmp, ec);
}

}  // namespace moeq
