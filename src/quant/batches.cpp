#include "quant/batches.h"

#include <ATen/Parallel.h>

#include <map>
#include <set>

#include "io/aten_view.h"

namespace moeq {
namespace {

std::string batch_key(const SitePlan& p) {
  const Site& s = *p.site;
  std::string k = std::to_string(s.layer) + "|" + role_name(s.role) + "|" + p.format + "|" +
                  std::to_string(p.params.block_size) + p.params.granularity + (p.params.double_quant ? "d" : "") +
                  (p.params.symmetric ? "s" : "a") + "|" + std::to_string(s.view.rows) + "x" + std::to_string(s.view.cols);
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
