#include "calib/hessian_observer.h"

#include <unistd.h>

#include <filesystem>

#include "core/error.h"
#include "io/safetensors_writer.h"
#include "calib/hessian_file.h"

namespace moeq {

void HessianObserver::linear_input(const std::vector<const Site*>& sites, const at::Tensor& x) {
  if (next_) next_->linear_input(sites, x);
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
  if (layer != device_layer_) {  // earlier layers are complete: to the host
    for (auto& [key, a] : acc_)
      if (key.first != layer && a.sum.device().is_cuda()) a.sum = a.sum.to(at::kCPU);
    device_layer_ = layer;
  }
  const at::Tensor x = x_in.dim() == 2 ? x_in : x_in.reshape({-1, x_in.size(-1)});
  const int64_t E = counts.size(0), in = x.size(1);
  Acc& a = acc_[{layer, proj}];
  if (!a.sum.defined()) {
    a.sum = at::zeros({E, in, in}, x.options().dtype(at::kFloat));
    a.rows.assign(E, 0);
  }
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

void HessianObserver::write(const std::string& path, const std::string& model_fingerprint) const {
  if (acc_.empty()) throw Error(path + ": the calibration forward reported no routed-expert input: no GPTQ Hessians to write");
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
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  std::error_code ec;
  std::filesystem::remove_all(tmp, ec);
  std::filesystem::create_directories(tmp);
  try {
    SafetensorsWriter w(tmp, specs, ~0ull,
                        {{"format", "moeq-gptq-hessians"}, {"model_fingerprint", model_fingerprint},
                         {"hessian", "2/n X^T X over the rows routed to each expert (float32)"}});
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
