#include "app/compare/eval_outputs.h"

#include <algorithm>
#include <chrono>
#include <tuple>

#include "calib/forward.h"
#include "calib/model_forward.h"
#include "core/error.h"
#include "formats/format.h"
#include "app/run/batches.h"
#include "calib/calibrators/awq_fold.h"
#include "calib/calibrators/awq_job.h"
#include "tensor/aten_view.h"

namespace moeq {
namespace {

// State shared by the copies of one plan's transform.
struct PlanDequant {
  std::shared_ptr<Checkpoint> ckpt;
  Plan plan;  // a copy: the jobs point into it
  std::vector<std::vector<SiteBatch>> jobs;
  std::map<std::string, std::tuple<size_t, size_t, int64_t>> where;  // site -> job, batch, index (-1: 2D)
  std::map<size_t, std::vector<at::Tensor>> cache;                   // job -> dequantized stacks
  std::map<size_t, size_t> left;                                     // job -> sites not served yet
  at::Device device = at::kCPU;
  std::shared_ptr<const AwqScales> awq;  // the plan's, if any

  // The job's stacks, quantized and dequantized as in moeq quantize (quantize.cpp step 3).
  std::vector<at::Tensor> dequantize_job(size_t k, at::ScalarType dtype) const {
    const auto& job = jobs[k];
    std::vector<at::Tensor> stacks;
    for (const SiteBatch& b : job) stacks.push_back(load_stack(*ckpt, b, device));
    const std::vector<QuantizedTensor> qs = quantize_job(*ckpt, job, stacks);
    std::vector<at::Tensor> out;
    for (size_t j = 0; j < job.size(); ++j)
      out.push_back(format_by_name(job[j].sites[0]->format).dequantize(qs[j], at::kFloat).to(dtype));
    return out;
  }

  at::Tensor operator()(const Site& s, const at::Tensor& w) {
    auto it = where.find(s.name);
    if (it == where.end()) {  // not quantized by this plan: exact, or AWQ-folded as exported
      if (!awq || !awq_folds(*awq, s)) return w;
      return awq_fold_weight(*awq, s, w).to(site_dtype(*ckpt, s)).to(w.scalar_type());
    }
    const auto [k, j, i] = it->second;
    auto c = cache.find(k);
    if (c == cache.end()) {
      c = cache.emplace(k, dequantize_job(k, w.scalar_type())).first;
      size_t n = 0;
      for (const SiteBatch& b : jobs[k]) n += b.sites.size();
      left[k] = n;
    }
    at::Tensor out = i < 0 ? c->second[j] : c->second[j].select(0, i);
    if (--left[k] == 0) {  // the job's last site: free its stacks
      cache.erase(c);
      left.erase(k);
    }
    return out;
  }
};

}  // namespace

WeightTransform plan_weight_transform(std::shared_ptr<Checkpoint> ckpt, const Plan& plan, const at::Device& device) {
  auto st = std::make_shared<PlanDequant>();
  st->ckpt = std::move(ckpt);
  st->plan = plan;
  st->device = device;
  st->jobs = plan_jobs(st->plan);
  for (const auto& sp : st->plan.sites)
    if (sp.calibrator.awq) st->awq = sp.calibrator.awq;
  for (size_t k = 0; k < st->jobs.size(); ++k)
    for (size_t j = 0; j < st->jobs[k].size(); ++j) {
      const SiteBatch& b = st->jobs[k][j];
      for (size_t i = 0; i < b.sites.size(); ++i)
        st->where[b.sites[i]->site->name] = std::make_tuple(k, j, b.sites.size() == 1 ? int64_t(-1) : static_cast<int64_t>(i));
    }
  return [st](const Site& s, const at::Tensor& w) { return (*st)(s, w); };
}

AuxTransform plan_aux_transform(const Model& model, const Plan& plan) {
  std::shared_ptr<const AwqScales> awq;
  for (const auto& sp : plan.sites)
    if (sp.calibrator.awq) awq = sp.calibrator.awq;
  if (!awq) return nullptr;
  auto folded = std::make_shared<std::map<std::string, at::Tensor>>(awq_folded_tensors(*awq, *model.checkpoint, model.sites));
  if (folded->empty()) return nullptr;
  return [folded](const std::string& name, const at::Tensor& t) {
    auto it = folded->find(name);
    return it == folded->end() ? t : it->second.to(t.device()).to(t.scalar_type());
  };
}

EvalResult evaluate_outputs(std::shared_ptr<Checkpoint> ckpt, const ModelConfig& cfg,
                            const std::vector<WeightTransform>& transforms, const EvalOptions& opt,
                            const std::vector<InputTransforms>& inputs) {
  return evaluate_outputs(model_of(std::move(ckpt), cfg), transforms, opt, inputs);
}

EvalResult evaluate_outputs(const Model& model, const std::vector<WeightTransform>& transforms, const EvalOptions& opt,
                            const std::vector<InputTransforms>& inputs) {
  const ModelConfig& cfg = model.config;
  if (!inputs.empty() && inputs.size() != transforms.size())
    throw Error("compare --eval: " + std::to_string(inputs.size()) + " input transforms for " +
                std::to_string(transforms.size()) + " weight transforms");
  const auto t0 = std::chrono::steady_clock::now();
  if (!opt.ids.defined() || opt.ids.dim() != 2 || opt.ids.scalar_type() != at::kLong || opt.ids.size(0) < 1 ||
      opt.ids.size(1) < 2)
    throw Error("compare --eval: the eval ids must be [samples >= 1, seq_len >= 2] int64");
  const int64_t N = opt.ids.size(0), S = opt.ids.size(1);
  const int64_t V = cfg.vocab_size > 0 ? cfg.vocab_size : 1;
  const int64_t per_sample = S * V * static_cast<int64_t>(sizeof(float));
  EvalResult res;
  res.samples_per_group = std::clamp<int64_t>(opt.ref_budget_bytes / std::max<int64_t>(1, per_sample), 1, N);
  std::vector<OutputErrorSums> sums(transforms.size());
  ForwardOptions fo;
  fo.device = opt.device;
  fo.dtype = opt.dtype;
  fo.chunk_samples = opt.chunk_samples;
  for (int64_t first = 0; first < N; first += res.samples_per_group) {
    const int64_t g = std::min(res.samples_per_group, N - first);
    const at::Tensor ids = opt.ids.narrow(0, first, g);
    res.groups++;
    // Reference logits of the group on the host, float32.
    at::Tensor ref;
    {
      fo.weight_transform = nullptr;
      fo.aux_transform = nullptr;
      fo.input_transform = nullptr;
      fo.expert_input_transform = nullptr;
      auto f = make_forward(model, fo);
      const ForwardStats st = f->run(ids, nullptr, [&](int64_t at_sample, const at::Tensor& logits) {
        if (!ref.defined()) ref = at::empty({g, S, logits.size(2)}, logits.options().device(at::kCPU).dtype(at::kFloat));
        ref.narrow(0, at_sample, logits.size(0)).copy_(logits);
      });
      res.expert_gemm = st.expert_gemm;
    }
    for (size_t k = 0; k < transforms.size(); ++k) {
      fo.weight_transform = transforms[k];
      fo.aux_transform = opt.aux.empty() ? nullptr : opt.aux.at(k);
      fo.input_transform = inputs.empty() ? nullptr : inputs[k].linear;
      fo.expert_input_transform = inputs.empty() ? nullptr : inputs[k].experts;
      auto f = make_forward(model, fo);
      f->run(ids, nullptr, [&](int64_t at_sample, const at::Tensor& logits) {
        const int64_t n = logits.size(0);
        accumulate_output_error(ref.narrow(0, at_sample, n).to(logits.device()), logits, ids.narrow(0, at_sample, n),
                                &sums[k]);
      });
    }
  }
  for (const auto& s : sums) res.variants.push_back(finish_output_error(s));
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace moeq
