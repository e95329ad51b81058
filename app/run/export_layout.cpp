#include "app/run/export_layout.h"

#include <set>

#include "export/tensor_sink.h"
#include "formats/part_specs.h"
#include "tensor/aten_view.h"

namespace moeq {

ExportOrder export_order(const Checkpoint& ck, const Plan& plan) {
  std::map<std::string, bool> quantized;  // stored tensor -> holds a quantized site
  std::set<std::string> decoded;          // quantized sources' codes and scales: never copied through
  for (const auto& sp : plan.sites) {
    quantized[sp.site->view.tensor] = quantized[sp.site->view.tensor] || sp.quantize;
    if (sp.site->view.source != SourceFormat::Plain) decoded.insert({sp.site->view.tensor, sp.site->view.scale});
  }
  ExportOrder o;
  for (const auto& name : ck.names())
    if (!quantized[name] && !decoded.count(name)) o.copy_through.push_back(name);
  // Unquantized sites of partly quantized fused stacks, and of quantized sources (written
  // decoded, bf16: `source fp8-block -> bf16` in the report).
  for (const auto& sp : plan.sites)
    if (!sp.quantize && ((sp.site->fused && quantized[sp.site->view.tensor]) || sp.site->view.source != SourceFormat::Plain))
      o.split_sites.push_back(&sp);
  o.jobs = plan_jobs(plan);
  return o;
}

QuantizedSite quantized_site(const SiteBatch& b, size_t i, const QuantizedTensor& q,
                             const std::map<std::string, InputScale>& in_scales) {
  QuantizedSite qs{b.sites[i]->site, &q, b.sites.size() == 1 ? -1 : static_cast<int64_t>(i), std::nullopt, std::nullopt};
  if (auto in = in_scales.find(b.sites[i]->site->name); in != in_scales.end()) {
    qs.input_scale = in->second.scale;
    qs.input_amax = in->second.amax;
  }
  return qs;
}

std::optional<std::vector<TensorSpec>> plan_export_layout(const Checkpoint& ck, const ExportOrder& order,
                                                          const ExportWriter& writer,
                                                          const std::map<std::string, InputScale>& in_scales,
                                                          std::string* why_not) {
  if (!writer.lays_out_before_quantizing()) {
    *why_not = "export writer " + writer.name() + " lays out its tensors only from quantized values";
    return std::nullopt;
  }
  LayoutRecorder rec;
  for (const auto& name : order.copy_through) {
    const TensorInfo& info = ck.info(name);
    rec.specs().push_back(TensorSpec{name, info.dtype, info.shape});
  }
  const auto meta = [](at::ScalarType t) { return at::TensorOptions().dtype(t).device(at::kMeta); };
  for (const SitePlan* sp : order.split_sites) {
    const Site& s = *sp->site;
    rec.add(s.module + ".weight", at::empty({s.view.rows, s.view.cols}, meta(site_dtype(ck, s))));
  }
  for (const auto& job : order.jobs)
    for (const SiteBatch& b : job) {
      const SitePlan& first = *b.sites[0];
      std::vector<int64_t> shape = {first.site->view.rows, first.site->view.cols};
      if (b.sites.size() > 1) shape.insert(shape.begin(), static_cast<int64_t>(b.sites.size()));
      const auto parts = part_specs(first.format, shape, first.params);
      if (!parts) {
        *why_not = "format " + first.format + " does not declare its parts' shapes before quantizing";
        return std::nullopt;
      }
      QuantizedTensor q;
      q.format = first.format;
      q.shape = shape;
      q.orig_dtype = site_dtype(ck, *first.site);
      q.params = first.params;
      for (const auto& [name, spec] : *parts) q.parts[name] = at::empty(spec.shape, meta(spec.dtype));
      for (size_t i = 0; i < b.sites.size(); ++i) writer.write(quantized_site(b, i, q, in_scales), rec);
    }
  return std::move(rec.specs());
}

}  // namespace moeq
