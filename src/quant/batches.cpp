#include "quant/batches.h"

#include <ATen/Parallel.h>

#include <cstdio>
#include <map>
#include <set>

#include "core/error.h"
#include "io/aten_view.h"
#include "quant/gptq_job.h"
#include "quant/mse_search.h"

namespace moeq {
namespace {

// Sites batch together only with the same calibrator (exact numbers, not describe()'s %g).
std::string calibrator_key(const WeightCalibrator& c) {
  if (c.is_gptq()) {
    char g[160];
    std::snprintf(g, sizeof g, "gptq:%lld:%.17g:%d:%lld", static_cast<long long>(c.gptq_block_size), c.gptq_dampening,
                  c.gptq_act_order ? 1 : 0, static_cast<long long>(c.gptq_min_tokens));
    return g;
  }
  if (!c.is_mse()) return c.method;
  char b[160];
  std::snprintf(b, sizeof b, "mse:%.17g:%.17g:%.17g:%d", c.start_multiplier, c.stop_multiplier, c.step_size,
                c.fp8_scale_sweep ? 1 : 0);
  return b;
}

std::string batch_key(const SitePlan& p) {
  const Site& s = *p.site;
  std::string k = std::to_string(s.layer) + "|" + role_name(s.role) + "|" + p.format + "|" +
                  std::to_string(p.params.block_size) + p.params.granularity + (p.params.double_quant ? "d" : "") +
                  (p.params.symmetric ? "s" : "a") + "|" + std::to_string(s.view.rows) + "x" + std::to_string(s.view.cols) +
                  "|" + calibrator_key(p.calibrator);
  return s.expert >= 0 ? k + "|" + s.proj : k + "|" + s.name;
}

bool has_tensor_scale(const SitePlan& p) {
  return p.format == "nvfp4" || (p.format == "fp8" && p.params.granularity == "tensor");
}

// The key of the batch holding the other half of a gate/up pair, or "".
std::string partner_key(const SiteBatch& b) {
  const Site& s = *b.sites[0]->site;
  if (s.proj != "gate" && s.proj != "up") return "";
  const std::string& k = b.key;
  if (s.expert >= 0) return k.substr(0, k.rfind('|')) + "|" + (s.proj == "gate" ? "up" : "gate");
  // Dense pairs: same module path with up_proj <-> gate_proj.
  std::string other = s.name.substr(0, s.name.rfind('.')) + (s.proj == "gate" ? ".up" : ".gate");
  return k.substr(0, k.rfind('|')) + "|" + other;
}

// The key without its calibrator field (layer|role|format|params|shape|CALIBRATOR|proj).
std::string without_calibrator(const std::string& key) {
  size_t at = 0;
  for (int i = 0; i < 5; ++i) at = key.find('|', at) + 1;
  return key.substr(0, at) + key.substr(key.find('|', at));
}

}  // namespace

std::vector<std::vector<SiteBatch>> plan_jobs(const Plan& plan) {
  std::map<std::string, SiteBatch> batches;
  std::vector<std::string> order;
  for (const auto& sp : plan.sites) {
    if (!sp.quantize) continue;
    const std::string k = batch_key(sp);
    if (!batches.count(k)) order.push_back(k);
    batches[k].sites.push_back(&sp);
    batches[k].key = k;
  }
  std::vector<std::vector<SiteBatch>> jobs;
  std::set<std::string> done;
  for (const auto& k : order) {
    if (done.count(k)) continue;
    std::vector<SiteBatch> job = {batches[k]};
    done.insert(k);
    const std::string pk = partner_key(batches[k]);
    if (!pk.empty() && batches.count(pk) && !done.count(pk) && batches[pk].sites.size() == batches[k].sites.size()) {
      job.push_back(batches[pk]);
      done.insert(pk);
    } else if (!pk.empty() && has_tensor_scale(*batches[k].sites[0])) {
      // A partner that differs only in its calibrator would get another per-tensor scale.
      for (const auto& [ok, ob] : batches)
        if (ok != pk && without_calibrator(ok) == without_calibrator(pk))
          throw Error(batches[k].sites[0]->site->name + " (calibrator " + batches[k].sites[0]->calibrator.describe() + ") and " +
                      ob.sites[0]->site->name + " (" + ob.sites[0]->calibrator.describe() + ") must share one per-tensor scale "
                      "(gate and up are fused), but their rules pick different calibrators; give them the same calibrator");
    }
    jobs.push_back(std::move(job));
  }
  return jobs;
}

at::Tensor load_stack(const Checkpoint& ck, const SiteBatch& b, const at::Device& dev) {
  std::vector<at::Tensor> views;
  for (const auto* p : b.sites) views.push_back(site_weight(ck, *p->site));
  at::Tensor w = b.sites.size() == 1 ? views[0].contiguous() : at::stack(views);
  return w.to(dev);
}

at::Tensor gather_stack(const Checkpoint& ck, const SiteBatch& b, bool pinned) {
  std::vector<at::Tensor> views;
  for (const auto* p : b.sites) views.push_back(site_weight(ck, *p->site));
  std::vector<int64_t> shape = views[0].sizes().vec();
  if (views.size() > 1) shape.insert(shape.begin(), static_cast<int64_t>(views.size()));
  at::Tensor out = at::empty(shape, views[0].options().pinned_memory(pinned));
  // One expert per task: the copies fault in the mmapped pages in parallel.
  at::parallel_for(0, static_cast<int64_t>(views.size()), 1, [&](int64_t a, int64_t z) {
    for (int64_t i = a; i < z; ++i) (views.size() == 1 ? out : out.select(0, i)).copy_(views[i]);
  });
  return out;
}

std::optional<at::Tensor> shared_amax(const std::vector<SiteBatch>& job, const std::vector<at::Tensor>& stacks) {
  if (job.size() != 2 || !has_tensor_scale(*job[0].sites[0])) return std::nullopt;
  auto a = [](const at::Tensor& w) { return w.dim() == 3 ? w.abs().amax({1, 2}) : w.abs().amax(); };
  return at::maximum(a(stacks[0]), a(stacks[1])).to(at::kFloat);
}

}  // namespace moeq

namespace moeq {

std::vector<QuantizedTensor> quantize_job(const std::vector<SiteBatch>& job, const std::vector<at::Tensor>& stacks) {
  const SitePlan& first = *job[0].sites[0];
  const QuantFormat& fmt = format_by_name(first.format);
  const WeightCalibrator& cal = first.calibrator;  // one per job: the batch key holds it
  std::optional<at::Tensor> amax = shared_amax(job, stacks);
  if (cal.is_gptq()) return gptq_quantize_job(job, stacks, amax);
  std::vector<QuantizedTensor> out;
  if (!cal.is_mse()) {
    for (size_t j = 0; j < job.size(); ++j) out.push_back(fmt.quantize(stacks[j], first.params, amax));
    return out;
  }
  auto own_amax = [](const at::Tensor& w) { return (w.dim() == 3 ? w.abs().amax({1, 2}) : w.abs().amax()).to(at::kFloat); };
  if (first.format == "fp8" && first.params.granularity == "channel") {
    for (size_t j = 0; j < job.size(); ++j)
      out.push_back(fmt.quantize(stacks[j], first.params, fp8_channel_mse_amax(stacks[j], cal)));
  } else if (first.format == "fp8") {
    // One amax for the whole job: a gate/up pair's joint error under one shared scale.
    const at::Tensor chosen = fp8_tensor_mse_amax(stacks, amax ? *amax : own_amax(stacks[0]), cal);
    for (size_t j = 0; j < job.size(); ++j)
      out.push_back(fmt.quantize(stacks[j], first.params, stacks[j].dim() == 2 ? chosen.reshape({}) : chosen));
  } else if (first.format == "nvfp4") {
    for (size_t j = 0; j < job.size(); ++j) {
      const at::Tensor a = amax ? *amax : own_amax(stacks[j]);
      out.push_back(fmt.quantize_with_block_scales(stacks[j], first.params, a, nvfp4_mse_block_scales(stacks[j], a, cal)));
    }
  } else {
    throw Error(first.site->name + ": calibrator " + cal.describe() + " does not apply to format " + first.format + " (" +
                calibrator_misfit(cal, first.format) + ")");
  }
  return out;
}

}  // namespace moeq
