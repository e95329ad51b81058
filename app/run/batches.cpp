#include "app/run/batches.h"

#include <ATen/Parallel.h>

#include <cstdio>
#include <exception>
#include <map>
#include <set>

#include "core/error.h"
#include "formats/format.h"
#include "tensor/aten_view.h"
#include "tensor/source_view.h"
#include "model/fusion.h"
#include "calib/calibrators/awq_job.h"
#include "calib/calibrators/gptq_job.h"
#include "calib/calibrators/mse_search.h"
#include "calib/calibrators/mxfp4_to_nvfp4.h"
#include "tensor/site_errors.h"

namespace moeq {
namespace {

// Sites batch together only with the same calibrator (exact numbers, not describe()'s %g).
std::string calibrator_key(const WeightCalibrator& c) {
  if (c.is_gptq()) {
    char g[160];
    std::snprintf(g, sizeof g, "gptq:%lld:%.17g:%d:%lld:%d", static_cast<long long>(c.gptq_block_size), c.gptq_dampening,
                  c.gptq_act_order ? 1 : 0, static_cast<long long>(c.gptq_min_tokens), c.gptq_observer_mse ? 1 : 0);
    if (!c.gptq_awq) return g;
    WeightCalibrator a = c;
    a.method = "awq";
    a.gptq_awq = false;
    return std::string(g) + "+" + calibrator_key(a);
  }
  if (c.is_awq()) {
    char a[96];
    std::snprintf(a, sizeof a, "awq:%.17g:%lld:%d%d%d%d%d", c.awq_alpha_step, static_cast<long long>(c.gptq_min_tokens), c.awq_down ? 1 : 0,
                  c.awq_gate_up ? 1 : 0, c.awq_qkv ? 1 : 0, c.awq_o ? 1 : 0, c.awq_inputs_given ? 1 : 0);
    return a;
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
  const QuantFormat* f = find_format(p.format);
  return f && f->has_tensor_scale(p.params);
}

// The key of the fusion group a batch belongs to (model/fusion.h: q/k/v, gate/up, ... as the
// plugin declares), the same for every member batch that can share one per-tensor scale: the
// batch key's layer|role|format|params fields, its calibrator, and the group (for expert stacks
// without the expert index). "" outside fusion groups.
std::string group_key(const SiteBatch& b, bool with_calibrator) {
  const Site& s = *b.sites[0]->site;
  const std::string fg = fusion_group(s);
  if (fg.empty()) return "";
  std::vector<std::string> f;
  for (size_t at = 0, next; at <= b.key.size(); at = next + 1) {
    next = b.key.find('|', at);
    if (next == std::string::npos) next = b.key.size();
    f.push_back(b.key.substr(at, next - at));
  }
  const std::string group = s.expert >= 0 ? fg.substr(fg.find('{')) : fg;
  return f[0] + "|" + f[1] + "|" + f[2] + "|" + f[3] + "|" + (with_calibrator ? f[5] : std::string()) + "|" + group;
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
  // Members of one fusion group with per-tensor scales must not differ in calibrator only.
  std::map<std::string, const SiteBatch*> calibrator_of;
  for (const auto& k : order) {
    const SiteBatch& b = batches[k];
    const std::string g = group_key(b, false);
    if (g.empty() || !has_tensor_scale(*b.sites[0])) continue;
    auto [it, fresh] = calibrator_of.emplace(g, &b);
    const SitePlan& a = *it->second->sites[0];
    if (!fresh && calibrator_key(a.calibrator) != calibrator_key(b.sites[0]->calibrator))
      throw Error(a.site->name + " (calibrator " + a.calibrator.describe() + ") and " + b.sites[0]->site->name + " (" +
                  b.sites[0]->calibrator.describe() + ") must share one per-tensor scale (fusion group " +
                  fusion_group(*b.sites[0]->site) + ": vLLM fuses them), but their rules pick different calibrators; "
                  "give them the same calibrator");
  }
  std::vector<std::vector<SiteBatch>> jobs;
  std::set<std::string> done;
  for (const auto& k : order) {
    if (done.count(k)) continue;
    std::vector<SiteBatch> job = {batches[k]};
    done.insert(k);
    const std::string g = group_key(batches[k], true);
    if (!g.empty())
      for (const auto& other : order)
        if (!done.count(other) && group_key(batches[other], true) == g &&
            batches[other].sites.size() == batches[k].sites.size()) {
          job.push_back(batches[other]);
          done.insert(other);
        }
    jobs.push_back(std::move(job));
  }
  return jobs;
}

at::Tensor load_stack(const Checkpoint& ck, const SiteBatch& b, const at::Device& dev) {
  if (dev.is_cuda() && gathers_source_bytes(b)) return decode_on(gather_for_device(ck, b, false), dev);
  std::vector<at::Tensor> views;
  for (const auto* p : b.sites) views.push_back(with_site_context(ck, *p->site, [&] { return site_weight(ck, *p->site); }));
  at::Tensor w = b.sites.size() == 1 ? views[0].contiguous() : at::stack(views);
  return w.to(dev);
}

at::Tensor gather_stack(const Checkpoint& ck, const SiteBatch& b, bool pinned) {
  std::vector<at::Tensor> views;
  for (const auto* p : b.sites) views.push_back(with_site_context(ck, *p->site, [&] { return site_weight(ck, *p->site); }));
  std::vector<int64_t> shape = views[0].sizes().vec();
  if (views.size() > 1) shape.insert(shape.begin(), static_cast<int64_t>(views.size()));
  at::Tensor out = at::empty(shape, views[0].options().pinned_memory(pinned));
  // One expert per task: the copies fault in the mmapped pages in parallel.
  at::parallel_for(0, static_cast<int64_t>(views.size()), 1, [&](int64_t a, int64_t z) {
    for (int64_t i = a; i < z; ++i) (views.size() == 1 ? out : out.select(0, i)).copy_(views[i]);
  });
  return out;
}

bool gathers_source_bytes(const SiteBatch& b) {
  const WeightView& a = b.sites[0]->site->view;
  if (a.source == SourceFormat::Plain) return false;
  for (const auto* p : b.sites) {
    const WeightView& v = p->site->view;
    if (v.source != a.source || v.scale.empty() || v.block_rows != a.block_rows || v.block_cols != a.block_cols ||
        v.transpose != a.transpose || v.row_start != a.row_start || v.row_step != a.row_step || v.rows != a.rows ||
        v.cols != a.cols || (v.expert >= 0) != (a.expert >= 0))
      return false;
  }
  return true;
}

int64_t GatheredStack::source_bytes() const {
  return codes.defined() ? static_cast<int64_t>(codes.nbytes() + scales.nbytes()) : 0;
}

GatheredStack gather_for_device(const Checkpoint& ck, const SiteBatch& b, bool pinned) {
  GatheredStack g;
  g.batch = &b;
  if (!gathers_source_bytes(b)) {
    g.decoded = gather_stack(ck, b, pinned);
    return g;
  }
  std::vector<SourceBytes> views;
  for (const auto* p : b.sites) views.push_back(with_site_context(ck, *p->site, [&] { return site_source_bytes(ck, *p->site); }));
  for (const SourceBytes& v : views)  // the stored tensors' shapes agree (checked at mapping), so this holds
    if (v.codes.sizes() != views[0].codes.sizes() || v.scales.sizes() != views[0].scales.sizes() ||
        v.codes.scalar_type() != views[0].codes.scalar_type() || v.scales.scalar_type() != views[0].scales.scalar_type()) {
      g.decoded = gather_stack(ck, b, pinned);
      return g;
    }
  auto stacked = [&](const at::Tensor& first) {
    std::vector<int64_t> shape = first.sizes().vec();
    shape.insert(shape.begin(), static_cast<int64_t>(views.size()));
    return at::empty(shape, first.options().pinned_memory(pinned));
  };
  g.codes = stacked(views[0].codes);
  g.scales = stacked(views[0].scales);
  // One site per task: the copies fault in the mmapped pages in parallel.
  at::parallel_for(0, static_cast<int64_t>(views.size()), 1, [&](int64_t a, int64_t z) {
    for (int64_t i = a; i < z; ++i) {
      g.codes.select(0, i).copy_(views[i].codes);
      g.scales.select(0, i).copy_(views[i].scales);
    }
  });
  return g;
}

at::Tensor decode_on(const GatheredStack& g, const at::Device& dev) {
  if (!g.codes.defined()) return g.decoded.to(dev, /*non_blocking=*/true);
  const SiteBatch& b = *g.batch;
  const Site& first = *b.sites[0]->site;
  const std::string what = "tensor '" + first.view.tensor + "' (site " + first.name + ")" +
                           (b.sites.size() > 1 ? " and the " + std::to_string(b.sites.size() - 1) + " other sites of its batch"
                                               : std::string());
  const at::Tensor codes = g.codes.to(dev, /*non_blocking=*/true), scales = g.scales.to(dev, /*non_blocking=*/true);
  at::Tensor w = decode_source_bytes(codes, scales, first, what).contiguous();
  if (b.sites.size() == 1) w = w.select(0, 0);
  if (w.size(-2) != first.view.rows || w.size(-1) != first.view.cols)
    throw Error(what + ": the decoded view has an unexpected shape");
  return w;
}

std::optional<at::Tensor> shared_amax(const std::vector<SiteBatch>& job, const std::vector<at::Tensor>& stacks) {
  if (job.size() < 2 || !has_tensor_scale(*job[0].sites[0])) return std::nullopt;
  auto a = [](const at::Tensor& w) { return w.dim() == 3 ? w.abs().amax({1, 2}) : w.abs().amax(); };
  at::Tensor m = a(stacks[0]);
  for (size_t j = 1; j < stacks.size(); ++j) m = at::maximum(m, a(stacks[j]));
  return m.to(at::kFloat);
}

}  // namespace moeq

namespace moeq {

namespace {
// The stacks as given (AWQ folded by quantize_stacks): the calibrator's path.
std::vector<QuantizedTensor> quantize_prepared(const std::vector<SiteBatch>& job, const std::vector<at::Tensor>& stacks,
                                               const Checkpoint* source, SourceConversionCounts* counts, bool folded);

std::vector<QuantizedTensor> quantize_stacks(const std::vector<SiteBatch>& job, const std::vector<at::Tensor>& source_stacks,
                                             const Checkpoint* source, SourceConversionCounts* counts) {
  const SitePlan& first = *job[0].sites[0];
  const QuantFormat& fmt = format_by_name(first.format);
  const WeightCalibrator& cal = first.calibrator;  // one per job: the batch key holds it
  std::vector<QuantizedTensor> out;
  // AWQ: the awq sites and the readers of a folded norm (router, shared experts, whatever their
  // calibrator) are quantized folded (calib/calibrators/awq_job.h); the export keeps the dtype.
  bool folded = false;
  for (const SiteBatch& b : job)
    for (const SitePlan* sp : b.sites) folded = folded || sp->calibrator.awq != nullptr;
  const std::vector<at::Tensor> stacks = folded ? awq_fold_stacks(job, source_stacks) : source_stacks;
  if (folded) {
    std::vector<QuantizedTensor> q = quantize_prepared(job, stacks, nullptr, nullptr, /*folded=*/true);
    for (size_t j = 0; j < q.size(); ++j) q[j].orig_dtype = source_stacks[j].scalar_type();
    return q;
  }
  return quantize_prepared(job, stacks, source, counts, false);
}

std::vector<QuantizedTensor> quantize_prepared(const std::vector<SiteBatch>& job, const std::vector<at::Tensor>& stacks,
                                               const Checkpoint* source, SourceConversionCounts* counts, bool folded) {
  const SitePlan& first = *job[0].sites[0];
  const QuantFormat& fmt = format_by_name(first.format);
  const WeightCalibrator& cal = first.calibrator;  // one per job: the batch key holds it
  std::vector<QuantizedTensor> out;
  if (source)
    if (auto conv = plan_mxfp4_to_nvfp4(*source, job, stacks)) {
      for (size_t j = 0; j < job.size(); ++j)
        out.push_back(fmt.quantize_with_block_scales(stacks[j], first.params, conv->amax, conv->block_scales[j]));
      if (counts) {
        counts->mxfp4_exact_blocks += conv->exact_blocks;
        counts->mxfp4_requantized_blocks += conv->requantized_blocks;
      }
      return out;
    }
  std::optional<at::Tensor> amax = shared_amax(job, stacks);
  // GPTQ on AWQ-folded weights (gptq's `awq:`, or a reader of a folded norm) uses the folded
  // Hessians (gptq_job.cpp).
  if (cal.is_gptq()) return gptq_quantize_job(job, stacks, amax);
  // AWQ: the scales are folded in (by the caller); then the format's max path, gate and up
  // sharing the global amax of the folded weights.
  if (!cal.is_mse()) {
    for (size_t j = 0; j < job.size(); ++j) out.push_back(fmt.quantize(stacks[j], first.params, amax));
    return out;
  }
  auto own_amax = [](const at::Tensor& w) { return (w.dim() == 3 ? w.abs().amax({1, 2}) : w.abs().amax()).to(at::kFloat); };
  const MseSearch search = fmt.traits().mse;
  if (search == MseSearch::TensorOrChannel && first.params.granularity == "channel") {
    for (size_t j = 0; j < job.size(); ++j)
      out.push_back(fmt.quantize(stacks[j], first.params, fp8_channel_mse_amax(stacks[j], cal)));
  } else if (search == MseSearch::TensorOrChannel) {
    // One amax for the whole job: a gate/up pair's joint error under one shared scale.
    const at::Tensor chosen = fp8_tensor_mse_amax(stacks, amax ? *amax : own_amax(stacks[0]), cal);
    for (size_t j = 0; j < job.size(); ++j)
      out.push_back(fmt.quantize(stacks[j], first.params, stacks[j].dim() == 2 ? chosen.reshape({}) : chosen));
  } else if (search == MseSearch::BlockScales) {
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


// The first site of the job that fails when quantized alone, with its own error (which
// says more than the stack's: "weight contains NaN" rather than "amax must be finite").
const Site* failing_site(const std::vector<SiteBatch>& job, const std::vector<at::Tensor>& stacks, std::exception_ptr* why) {
  for (size_t j = 0; j < job.size(); ++j)
    for (size_t i = 0; i < job[j].sites.size(); ++i) {
      const SiteBatch one{{job[j].sites[i]}, job[j].key};
      const at::Tensor w = job[j].sites.size() > 1 ? stacks[j].select(0, static_cast<int64_t>(i)) : stacks[j];
      try {
        (void)quantize_stacks({one}, {w}, nullptr, nullptr);
      } catch (...) {
        *why = std::current_exception();
        return job[j].sites[i]->site;
      }
    }
  return nullptr;
}
}  // namespace

std::vector<QuantizedTensor> quantize_job(const Checkpoint& ck, const std::vector<SiteBatch>& job,
                                          const std::vector<at::Tensor>& stacks, SourceConversionCounts* counts) {
  try {
    return quantize_stacks(job, stacks, &ck, counts);
  } catch (...) {
    std::exception_ptr why = std::current_exception();
    const Site* culprit = job.size() == 1 && job[0].sites.size() == 1 ? job[0].sites[0]->site : failing_site(job, stacks, &why);
    try {
      std::rethrow_exception(why);
    } catch (...) {
      if (culprit) rethrow_with_site(ck, *culprit);
      size_t n = 0;
      for (const auto& b : job) n += b.sites.size();
      rethrow_with_context(job[0].sites[0]->site->name + " and the " + std::to_string(n - 1) +
                           " other sites quantized with it (first: " + site_context(ck, *job[0].sites[0]->site) + ")");
    }
  }
}

}  // namespace moeq
