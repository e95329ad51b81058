#include "app/run/dry_run.h"

#include <algorithm>
#include <cmath>

#include "core/format_util.h"
#include "formats/format.h"
#include "model/site_bytes.h"

namespace moeq {

PlanTotals print_plan(FILE* to, const Plan& plan, const Checkpoint& ck, const std::string& export_format) {
  PlanTotals t;
  t.source_bytes = ck.total_bytes();
  std::fprintf(to, "%-40s %-14s %12s %12s  %s\n", "site", "shape [out,in]", "bytes before", "bytes after", "plan");
  for (const SitePlan& sp : plan.sites) {
    const Site& s = *sp.site;
    const uint64_t weights = static_cast<uint64_t>(s.view.rows * s.view.cols);
    const uint64_t before = stored_bytes(ck, s);
    uint64_t after = before;
    std::string what;
    if (sp.quantize) {
      const QuantFormat& f = format_by_name(sp.format);
      const double bits = f.bits_per_weight({s.view.rows, s.view.cols}, sp.params) * static_cast<double>(weights);
      after = static_cast<uint64_t>(std::ceil(bits / 8.0));
      what = sp.format;
      if (sp.params.block_size) what += " block " + std::to_string(sp.params.block_size);
      if (sp.params.double_quant) what += " double-quant";
      if (sp.input_quant) what += " + input quant";
      if (!sp.reason.empty()) what += " (" + sp.reason + ")";
      ++t.quantized;
    } else {
      what = "kept: " + (sp.reason.empty() ? std::string("no rule quantizes it") : sp.reason);
    }
    const std::string shape = "[" + std::to_string(s.view.rows) + ", " + std::to_string(s.view.cols) + "]";
    std::fprintf(to, "%-40s %-14s %12llu %12llu  %s\n", s.name.c_str(), shape.c_str(), (unsigned long long)before,
                 (unsigned long long)after, what.c_str());
    ++t.sites;
    t.site_bytes_before += before;
    t.site_bytes_after += after;
  }
  t.export_bytes = t.source_bytes - t.site_bytes_before + t.site_bytes_after;
  for (const auto& w : plan.warnings) std::fprintf(to, "warning: %s\n", w.c_str());
  std::fprintf(to, "total: %zu sites, %zu quantized, %zu kept; sites %s -> %s; checkpoint %s -> %s (%.2fx smaller, export %s)\n",
               t.sites, t.quantized, t.sites - t.quantized, human_bytes(t.site_bytes_before).c_str(),
               human_bytes(t.site_bytes_after).c_str(), human_bytes(t.source_bytes).c_str(),
               human_bytes(t.export_bytes).c_str(),
               static_cast<double>(t.source_bytes) / static_cast<double>(std::max<uint64_t>(1, t.export_bytes)),
               export_format.c_str());
  return t;
}

}  // namespace moeq
