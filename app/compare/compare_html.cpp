// report.html: the comparison tables and inline SVG charts in one file, no scripts and
// no external resources, so it opens offline.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "app/compare/compare_report.h"
#include "app/compare/svg_plot.h"
#include "core/format_util.h"

namespace moeq {
namespace {

using svg::escape;

std::string db(double v) { return std::isfinite(v) ? svg::number(v, 2) : (v > 0 ? "exact" : "-"); }

// Escapes, then turns the markdown **bold** of the pick text into <b>.
std::string rich(const std::string& s) {
  std::string e = escape(s), o;
  bool open = false;
  for (size_t i = 0; i < e.size(); ++i) {
    if (e.compare(i, 2, "**") == 0) {
      o += open ? "</b>" : "<b>";
      open = !open;
      ++i;
    } else {
      o += e[i];
    }
  }
  if (open) o += "</b>";
  return o;
}

const char* kStyle =
    "body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1140px}"
    "table{border-collapse:collapse;margin:8px 0 20px}th,td{border:1px solid #ccc;padding:4px 8px;font-size:13px}"
    "th{background:#f2f2f2}td.n{text-align:right;font-variant-numeric:tabular-nums}"
    ".note{background:#fff6e0;border-left:4px solid #e0a800;padding:8px 12px}"
    ".pick{background:#eef6ee;border-left:4px solid #59a14f;padding:8px 12px}"
    "figure{margin:12px 0 24px}figcaption{font-size:12px;color:#555}";

std::string summary_table(const CompareResult& r) {
  std::ostringstream o;
  o << "<table><tr><th>variant</th><th>formats</th><th>quantized sites</th><th>expected size</th><th>smaller by</th>"
       "<th>bits/weight</th><th>mean SQNR dB</th><th>worst SQNR dB</th><th>worst site</th><th>mean rel. error</th></tr>";
  for (size_t k = 0; k < r.variants.size(); ++k) {
    const Variant& v = r.variants[k];
    const bool any = v.all.quantized > v.all.exact;
    const std::string none = no_weight_text(v);
    const double ratio = static_cast<double>(v.source_bytes) / static_cast<double>(std::max<uint64_t>(1, v.expected_bytes));
    o << "<tr><td><span style=\"color:" << svg::palette(k) << "\">&#9632;</span> " << escape(v.name) << "</td><td>"
      << escape(formats_cell(v)) << "</td><td class=n>" << v.all.quantized << " / " << v.sites_total
      << "</td><td class=n>" << human_bytes(v.expected_bytes) << "</td><td class=n>" << svg::number(ratio, 2)
      << "x</td><td class=n>" << escape(weight_bits_cell(v)) << "</td><td class=n>"
      << escape(any ? db(v.all.mean_sqnr_db) : none) << "</td><td class=n>" << escape(any ? db(v.all.min_sqnr_db) : none)
      << "</td><td>" << escape(any ? v.all.worst_site : none) << "</td><td class=n>"
      << escape(any ? svg::number(v.all.mean_rel_err, 4) : none) << "</td></tr>";
  }
  o << "</table>";
  return o.str();
}

std::string role_table(const CompareResult& r) {
  std::vector<std::string> roles;
  for (const auto& v : r.variants)
    for (const auto& [role, s] : v.per_role)
      if (s.quantized && std::find(roles.begin(), roles.end(), role) == roles.end()) roles.push_back(role);
  std::sort(roles.begin(), roles.end());
  std::ostringstream o;
  o << "<table><tr><th>variant</th>";
  for (const auto& role : roles) o << "<th>" << escape(role) << "<br>mean / worst dB</th>";
  o << "</tr>";
  for (const auto& v : r.variants) {
    o << "<tr><td>" << escape(v.name) << "</td>";
    for (const auto& role : roles) {
      auto it = v.per_role.find(role);
      std::string cell = no_weight_text(v);
      if (it != v.per_role.end() && it->second.quantized)
        cell = it->second.quantized == it->second.exact ? "exact"
                                                        : db(it->second.mean_sqnr_db) + " / " + db(it->second.min_sqnr_db);
      o << "<td class=n>" << escape(cell) << "</td>";
    }
    o << "</tr>";
  }
  o << "</table>";
  return o.str();
}

std::string layer_chart(const CompareResult& r) {
  std::vector<svg::Series> series;
  for (const auto& v : r.variants) {
    svg::Series s;
    s.name = v.name;
    for (const auto& [layer, st] : v.per_layer) {
      s.x.push_back(static_cast<double>(layer));
      s.y.push_back(st.quantized > st.exact ? st.mean_sqnr_db : NAN);
    }
    series.push_back(s);
  }
  svg::Frame f{"Weight SQNR per layer (mean over quantized sites; higher is better)", "layer", "SQNR (dB)", 1100, 420};
  return svg::line_plot(f, series, true);
}

std::string size_chart(const CompareResult& r) {
  std::vector<svg::Point> pts;
  for (const auto& v : r.variants)
    pts.push_back({v.name, static_cast<double>(v.expected_bytes) / (1024.0 * 1024.0), headline_sqnr(v)});
  svg::Frame f{"Expected export size vs weight error (up and to the left is better)", "expected export size (MiB)",
               "mean SQNR (dB)", 1100, 420};
  return svg::scatter_plot(f, pts);
}

std::string output_table(const CompareResult& r) {
  std::ostringstream o;
  o << "<table><tr><th>variant</th><th>activations</th><th>expected size</th><th>mean KL (nats)</th><th>max KL</th><th>top-1 agreement</th>"
       "<th>logit cosine</th><th>ppl</th><th>ppl delta</th></tr>";
  for (size_t k = 0; k < r.variants.size(); ++k) {
    const Variant& v = r.variants[k];
    const OutputError& e = v.output;
    o << "<tr><td><span style=\"color:" << svg::palette(k) << "\">&#9632;</span> " << escape(v.name)
      << "</td><td>" << escape(v.activations) << "</td><td class=n>" << human_bytes(v.expected_bytes)
      << "</td><td class=n>" << kl_text(e.kl_mean)
      << "</td><td class=n>" << kl_text(e.kl_max) << "</td><td class=n>" << svg::number(100.0 * e.top1, 2)
      << "%</td><td class=n>" << svg::number(e.cosine_mean, 6) << "</td><td class=n>" << svg::number(e.ppl_quant, 4)
      << "</td><td class=n>" << (e.ppl_delta >= 0 ? "+" : "") << svg::number(e.ppl_delta, 4) << "</td></tr>";
  }
  o << "</table>";
  return o.str();
}

// KL spans orders of magnitude between 8-bit and 4-bit formats: plotted as log10.
std::string kl_chart(const CompareResult& r) {
  std::vector<svg::Point> pts;
  for (const auto& v : r.variants)
    pts.push_back({v.name, static_cast<double>(v.expected_bytes) / (1024.0 * 1024.0),
                   v.output.kl_mean > 0 ? std::log10(v.output.kl_mean) : NAN});
  svg::Frame f{"Expected export size vs output error (down and to the left is better)", "expected export size (MiB)",
               "log10 mean KL (nats/token)", 1100, 420};
  return svg::scatter_plot(f, pts);
}

std::string heatmaps(const CompareResult& r) {
  std::ostringstream o;
  for (const auto& v : r.variants) {
    if (v.experts.empty()) continue;
    std::vector<std::vector<double>> grid(static_cast<size_t>(r.layers),
                                          std::vector<double>(static_cast<size_t>(r.experts_per_layer), NAN));
    for (const auto& e : v.experts) grid[e.layer][e.expert] = e.sqnr_db;
    // One row per decoder layer: layers without routed experts (dense first layers) stay empty.
    const double cell = std::clamp(360.0 / static_cast<double>(r.layers), 6.0, 28.0);
    svg::Frame f{v.name + ": SQNR per expert (all quantized projections)", "expert", "layer", 1100,
                 static_cast<int>(cell * static_cast<double>(r.layers)) + 82};
    o << "<figure>" << svg::heatmap(f, grid, "layer", "expert", "dB", NAN, NAN)
      << "<figcaption>Colour range is this variant's own (min to max expert SQNR); empty cells: expert not "
         "quantized.</figcaption></figure>";
  }
  if (o.str().empty()) o << "<p>No variant quantized routed experts.</p>";
  return o.str();
}

}  // namespace

std::string compare_html(const CompareResult& r, const Pick& pick) {
  std::ostringstream h;
  h << "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>moeq compare: " << escape(r.model)
    << "</title><style>" << kStyle << "</style></head><body>";
  h << "<h1>moeq compare</h1><p>model <code>" << escape(r.model) << "</code> (plugin " << escape(r.plugin)
    << "), device " << escape(r.device) << "</p>";
  h << "<p class=note>" << escape(output_error_note(r)) << "</p>";
  if (r.eval.measured)
    h << "<h2>Output error (fake-quantized vs unquantized model)</h2>" << output_table(r) << "<figure>" << kl_chart(r)
      << "<figcaption>Variants with KL exactly 0 (nothing quantized) have no point.</figcaption></figure>";
  h << "<h2>Size and weight error</h2>" << summary_table(r);
  h << "<h2>SQNR per role</h2>" << role_table(r);
  h << "<h2>Which to pick</h2><p class=pick>" << rich(pick.text) << "</p>";
  h << "<h2>Charts</h2><figure>" << layer_chart(r) << "</figure><figure>" << size_chart(r) << "</figure>";
  h << "<h2>Per-expert error</h2>" << heatmaps(r);
  h << "<p>report.json holds every number (per site, layer and expert); report.md the same tables in text.</p>";
  h << "</body></html>\n";
  return h.str();
}

}  // namespace moeq
