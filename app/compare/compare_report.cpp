#include "app/compare/compare_report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <cstdio>

#include "app/compare/svg_plot.h"
#include "core/error.h"
#include "core/format_util.h"
#include "io/output_guard.h"

namespace moeq {

std::string kl_text(double v) {
  if (v == 0 || !std::isfinite(v)) return v == 0 ? "0" : "-";
  if (std::fabs(v) >= 1e-3) return svg::number(v, 5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3e", v);
  return buf;
}

std::string output_error_note(const CompareResult& r) {
  if (!r.eval.measured)
    return "Output-error metrics (KL divergence, top-1 agreement, perplexity, logit cosine) are not measured: pass "
           "--eval DATA (or --eval-ids IDS.safetensors) to run the native forward. Everything here is weight error.";
  const EvalInfo& e = r.eval;
  std::ostringstream o;
  o << "Output error measured with moeq's native forward (" << e.dtype << " on " << r.device << ") on "
    << e.samples << " samples x " << e.seq_len << " tokens (" << e.tokens << " predicted tokens) from " << e.source
    << "; every variant's weights are quantize-dequantized as its export would hold them, unquantized sites stay "
       "exact, "
    << (e.calib.empty()
            ? std::string("activations are not quantized (recipes with input_quant are measured with weights only; "
                          "--calib calib.h5 quantizes their activations)")
            : "and variants labelled W4A4 / W8A8 also fake-quantize the input of every input_quant linear as the "
              "deployed kernel does (FP8: static per-tensor scale; NVFP4: the static global scale and dynamic E4M3 "
              "scales per 16 inputs), with the input scales the export carries, from " + e.calib +
              " (per expert for routed experts, gate and up sharing one); rows marked (weights only) are the same "
              "recipes without activation quantization")
    << (e.exports == 0
            ? std::string()
            : ". Variants read from --exports (" + std::to_string(e.exports) +
                  ") run the same forward with the export's own weights, decoded from its stored tensors, and the export's own "
                  "norms, biases and other tensors (each variant's warnings say how many differ from the source's, e.g. "
                  "AWQ-folded norms); their W4A4 / W8A8 rows fake-quantize each input-quantized "
                  "linear's input with the export's own input scale (per expert), and their size is the export's "
                  "stored tensors")
    << ". Reference perplexity " << svg::number(e.ppl_ref, 4) << ". Reference "
    << "logits kept on the host in float32, " << e.samples_per_group << " samples per group (" << e.groups
    << " group(s), --eval-ref-mib " << e.ref_budget_mib << "); " << svg::number(e.seconds, 1) << " s.";
  return o.str();
}

namespace {

using json = nlohmann::ordered_json;

json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// SQNR summary fields, null where nothing finite was measured.
json stats_json(const ErrorStats& s) {
  const bool any = s.quantized > s.exact;
  return {{"sites", s.sites},
          {"quantized", s.quantized},
          {"exact", s.exact},
          {"mean_sqnr_db", any ? num(s.mean_sqnr_db) : json(nullptr)},
          {"min_sqnr_db", any ? num(s.min_sqnr_db) : json(nullptr)},
          {"mean_rel_err", any ? num(s.mean_rel_err) : json(nullptr)},
          {"max_rel_err", any ? num(s.max_rel_err) : json(nullptr)},
          {"worst_site", any ? json(s.worst_site) : json(nullptr)}};
}

json expert_json(const ExpertError& e) {
  return {{"layer", e.layer}, {"expert", e.expert}, {"sqnr_db", num(e.sqnr_db)}, {"rel_err", num(e.rel_err)},
          {"worst_proj", e.worst_proj}, {"worst_proj_sqnr_db", num(e.worst_proj_sqnr_db)}};
}

std::string db(double v) { return std::isfinite(v) ? svg::number(v, 2) : (v > 0 ? "exact" : "-"); }

std::string stats_cell(const ErrorStats& s) {
  if (s.quantized == 0) return "-";
  if (s.quantized == s.exact) return "exact";
  return db(s.mean_sqnr_db) + " / " + db(s.min_sqnr_db);
}

double ratio(const Variant& v) {
  return static_cast<double>(v.source_bytes) / static_cast<double>(std::max<uint64_t>(1, v.expected_bytes));
}

}  // namespace

std::string no_weight_text(const Variant& v) { return v.activations_only_twin ? "\u2014" : "-"; }

std::string formats_cell(const Variant& v) {
  if (v.activations_only_twin) return "source weights";
  std::string fmts;
  for (const auto& f : v.formats) fmts += (fmts.empty() ? "" : ", ") + f;
  return fmts.empty() ? "-" : fmts;
}

std::string weight_bits_cell(const Variant& v) {
  if (v.activations_only_twin) return "source weights";
  return v.all.quantized ? svg::number(v.bits_per_weight, 3) : "-";
}

double headline_sqnr(const Variant& v) {
  return v.all.quantized > v.all.exact ? v.all.mean_sqnr_db : NAN;
}

std::string variant_lines(const Variant& v) {
  const double mib = static_cast<double>(v.expected_bytes) / (1024.0 * 1024.0);
  char weights[64], buf[512];
  if (v.all.quantized == 0)  // --activations-only rows (or a recipe that quantizes nothing): no weight error
    std::snprintf(weights, sizeof weights, "%-40s", "source weights (none quantized)");
  else if (v.all.quantized == v.all.exact)
    std::snprintf(weights, sizeof weights, "%6.3f bits/weight  mean SQNR   exact   ", v.bits_per_weight);
  else
    std::snprintf(weights, sizeof weights, "%6.3f bits/weight  mean SQNR %7.2f dB", v.bits_per_weight, headline_sqnr(v));
  std::snprintf(buf, sizeof buf, "%-32s %10.2f MiB  %s", v.name.c_str(), mib, weights);
  std::string out = buf;
  if (v.output.measured) {
    std::snprintf(buf, sizeof buf, "  KL %s  top-1 %6.2f%%  ppl %.3f -> %.3f (%+.4f)  activations: ", kl_text(v.output.kl_mean).c_str(),
                  100.0 * v.output.top1, v.output.ppl_ref, v.output.ppl_quant, v.output.ppl_delta);
    out += buf + v.activations;
  }
  out += "\n";
  if (v.aux.from_export && !v.weights_only_twin) {
    std::snprintf(buf, sizeof buf, "%-32s aux tensors from the export: %lld (norms, biases, ...), %lld differ from the source's%s\n",
                  "", static_cast<long long>(v.aux.tensors), static_cast<long long>(v.aux.differing),
                  v.aux.differing ? " (the forward uses the export's)" : "");
    out += buf;
  }
  return out;
}

namespace {
Pick pick_by_weight(const CompareResult& r, double within_db) {
  Pick p;
  p.within_db = within_db;
  const auto& vs = r.variants;
  std::vector<int> measured;
  for (int i = 0; i < static_cast<int>(vs.size()); ++i)
    if (std::isfinite(headline_sqnr(vs[i])) && !vs[i].reference_row()) measured.push_back(i);
  std::ostringstream t;
  t << "Rule (moeq compare): among the variants with a measured weight error, pick the smallest expected export "
       "whose mean SQNR over its quantized sites is within "
    << svg::number(within_db, 1) << " dB of the best (--within-db). ";
  if (measured.empty()) {
    p.text = t.str() + "No variant quantized any site, so there is nothing to pick.";
    return p;
  }
  for (int i : measured)
    if (p.best < 0 || headline_sqnr(vs[i]) > headline_sqnr(vs[p.best])) p.best = i;
  const double floor_db = headline_sqnr(vs[p.best]) - within_db;
  for (int i : measured)
    if (headline_sqnr(vs[i]) >= floor_db &&
        (p.chosen < 0 || vs[i].expected_bytes < vs[p.chosen].expected_bytes ||
         (vs[i].expected_bytes == vs[p.chosen].expected_bytes && headline_sqnr(vs[i]) > headline_sqnr(vs[p.chosen]))))
      p.chosen = i;
  for (int i : measured) {
    bool dominated = false;
    for (int j : measured) {
      if (j == i) continue;
      const bool no_worse = vs[j].expected_bytes <= vs[i].expected_bytes && headline_sqnr(vs[j]) >= headline_sqnr(vs[i]);
      const bool better = vs[j].expected_bytes < vs[i].expected_bytes || headline_sqnr(vs[j]) > headline_sqnr(vs[i]);
      dominated = dominated || (no_worse && better);
    }
    if (!dominated) p.pareto.push_back(i);
  }
  std::stable_sort(p.pareto.begin(), p.pareto.end(),
                   [&](int a, int b) { return vs[a].expected_bytes < vs[b].expected_bytes; });
  auto desc = [&](int i) {
    return vs[i].name + " (" + db(headline_sqnr(vs[i])) + " dB, " + human_bytes(vs[i].expected_bytes) + ")";
  };
  t << "Best: " << desc(p.best) << ". Pick: **" << vs[p.chosen].name << "** (" << db(headline_sqnr(vs[p.chosen]))
    << " dB, " << human_bytes(vs[p.chosen].expected_bytes) << ", " << svg::number(ratio(vs[p.chosen]), 2)
    << "x smaller than the source). Pareto front, smallest first: ";
  for (size_t k = 0; k < p.pareto.size(); ++k) t << (k ? ", " : "") << desc(p.pareto[k]);
  t << ".";
  // The next step down in size along the front, and what it costs.
  int next = -1;
  for (int i : p.pareto)
    if (vs[i].expected_bytes < vs[p.chosen].expected_bytes) next = i;
  if (next >= 0) {
    const double saved = static_cast<double>(vs[p.chosen].expected_bytes - vs[next].expected_bytes);
    const double cost = headline_sqnr(vs[p.chosen]) - headline_sqnr(vs[next]);
    t << " Next smaller on the front: " << vs[next].name << " saves " << human_bytes(static_cast<uint64_t>(saved))
      << " (" << svg::number(100.0 * saved / static_cast<double>(vs[p.chosen].expected_bytes), 1) << "%) for "
      << svg::number(cost, 2) << " dB less SQNR (--within-db " << svg::number(std::ceil(cost * 10) / 10, 1)
      << " picks it).";
  }
  p.text = t.str();
  return p;
}

std::string output_desc(const Variant& v) {
  const OutputError& o = v.output;
  return v.name + " (KL " + kl_text(o.kl_mean) + ", top-1 " + svg::number(100.0 * o.top1, 2) + "%, ppl " +
         (o.ppl_delta >= 0 ? "+" : "") + svg::number(o.ppl_delta, 4) + ", " + human_bytes(v.expected_bytes) + ")";
}

Pick pick_by_output(const CompareResult& r, double within_db, double max_kl) {
  const Pick weight = pick_by_weight(r, within_db);
  Pick p;
  p.within_db = within_db;
  p.max_kl = max_kl;
  p.by_output = true;
  const auto& vs = r.variants;
  std::vector<int> measured;
  for (int i = 0; i < static_cast<int>(vs.size()); ++i)
    if (vs[i].output.measured && !vs[i].reference_row()) measured.push_back(i);
  std::ostringstream t;
  t << "Rule (moeq compare, output error): pick the smallest expected export whose mean KL(reference || quantized) "
       "per token is at most "
    << kl_text(max_kl) << " nats (--max-kl); weight SQNR is reported but does not decide. ";
  if (measured.empty()) {
    p.text = t.str() + "No variant has a measured output error.";
    return p;
  }
  auto kl = [&](int i) { return vs[i].output.kl_mean; };
  for (int i : measured)
    if (p.best < 0 || kl(i) < kl(p.best)) p.best = i;
  for (int i : measured)
    if (kl(i) <= max_kl && (p.chosen < 0 || vs[i].expected_bytes < vs[p.chosen].expected_bytes ||
                            (vs[i].expected_bytes == vs[p.chosen].expected_bytes && kl(i) < kl(p.chosen))))
      p.chosen = i;
  const bool none_fits = p.chosen < 0;
  p.none_fits = none_fits;
  if (none_fits) p.chosen = p.best;
  for (int i : measured) {
    bool dominated = false;
    for (int j : measured) {
      if (j == i) continue;
      const bool no_worse = vs[j].expected_bytes <= vs[i].expected_bytes && kl(j) <= kl(i);
      const bool better = vs[j].expected_bytes < vs[i].expected_bytes || kl(j) < kl(i);
      dominated = dominated || (no_worse && better);
    }
    if (!dominated) p.pareto.push_back(i);
  }
  std::stable_sort(p.pareto.begin(), p.pareto.end(),
                   [&](int a, int b) { return vs[a].expected_bytes < vs[b].expected_bytes; });
  const Variant& c = vs[p.chosen];
  if (none_fits)
    t << "No variant is within " << kl_text(max_kl) << " nats; the lowest KL is " << output_desc(vs[p.best])
      << ". Pick: **" << c.name << "** (the most faithful; raise --max-kl or try larger formats). ";
  else
    t << "Pick: **" << c.name << "**: " << output_desc(c) << ", " << svg::number(ratio(c), 2)
      << "x smaller than the source, weight SQNR " << db(headline_sqnr(c)) << " dB. Lowest KL: "
      << output_desc(vs[p.best]) << ". ";
  t << "Pareto front over size and KL, smallest first: ";
  for (size_t k = 0; k < p.pareto.size(); ++k) t << (k ? ", " : "") << output_desc(vs[p.pareto[k]]);
  t << ".";
  int next = -1;
  for (int i : p.pareto)
    if (vs[i].expected_bytes < c.expected_bytes) next = i;
  if (next >= 0) {
    const double saved = static_cast<double>(c.expected_bytes - vs[next].expected_bytes);
    t << " Next smaller on the front: " << vs[next].name << " saves " << human_bytes(static_cast<uint64_t>(saved)) << " ("
      << svg::number(100.0 * saved / static_cast<double>(c.expected_bytes), 1) << "%) at KL " << kl_text(kl(next))
      << " (" << svg::number(kl(next) / std::max(kl(p.chosen), 1e-12), 1) << "x the pick's).";
  }
  if (weight.chosen >= 0)
    t << (weight.chosen == p.chosen ? " The weight-SQNR rule (within " + svg::number(within_db, 1) + " dB) agrees."
                                    : " The weight-SQNR rule (within " + svg::number(within_db, 1) + " dB) would pick " +
                                          vs[weight.chosen].name + " (" + output_desc(vs[weight.chosen]) +
                                          "); the output error decides here.");
  if (std::any_of(vs.begin(), vs.end(), [](const Variant& v) { return v.weights_only_twin; }))
    t << " Rows marked (weights only) are the activation-quantized recipes without their activation quantization: "
         "references that show what the activations cost, not candidates.";
  if (std::any_of(vs.begin(), vs.end(), [](const Variant& v) { return v.activations_only_twin; }))
    t << " Rows marked (activations only) are the source weights with a recipe's activation quantization "
         "(--activations-only): references that show what the activations alone cost, not candidates.";
  p.text = t.str();
  return p;
}
}  // namespace

Pick pick_variant(const CompareResult& r, double within_db, double max_kl) {
  return r.eval.measured ? pick_by_output(r, within_db, max_kl) : pick_by_weight(r, within_db);
}

namespace {

json output_error_json(const CompareResult& r) {
  const EvalInfo& e = r.eval;
  json oe = {{"measured", e.measured}, {"metrics", {"kl", "top1", "perplexity", "logit_cosine"}}, {"note", output_error_note(r)}};
  if (e.measured) {
    oe["source"] = e.source;
    oe["dtype"] = e.dtype;
    oe["samples"] = e.samples;
    oe["seq_len"] = e.seq_len;
    oe["tokens"] = e.tokens;
    oe["ppl_ref"] = num(e.ppl_ref);
    oe["groups"] = e.groups;
    oe["samples_per_group"] = e.samples_per_group;
    oe["ref_budget_mib"] = e.ref_budget_mib;
    oe["seconds"] = e.seconds;
    oe["expert_gemm"] = e.expert_gemm;
    oe["calib"] = e.calib.empty() ? json(nullptr) : json(e.calib);
    oe["definitions"] = {
        {"tokens", "positions 0..S-2 of every sample (each predicts the next id); all metrics over the same tokens"},
        {"kl_mean", "mean over tokens of KL(P_ref || P_quant) = sum_v p_ref (log p_ref - log p_quant), nats"},
        {"kl_max", "the largest per-token KL"},
        {"top1", "fraction of tokens whose argmax agrees"},
        {"ppl", "exp(mean NLL of the next id); ppl_delta = ppl_quant - ppl_ref"},
        {"cosine_mean", "mean over tokens of the cosine of the two logit vectors"}};
  }
  return oe;
}

json variant_json(const Variant& v) {
  json x;
  x["name"] = v.name;
  x["source"] = v.source;
  x["export"] = v.export_format;
  x["formats"] = v.formats;
  x["sites_total"] = v.sites_total;
  x["quantized_sites"] = v.all.quantized;
  x["quantized_weights"] = v.quantized_weights;
  x["source_bytes"] = v.source_bytes;
  x["expected_bytes"] = v.expected_bytes;
  x["size_ratio"] = ratio(v);
  x["bits_per_weight"] = v.all.quantized ? num(v.bits_per_weight) : json(nullptr);
  x["summary"] = stats_json(v.all);
  x["activations"] = {{"label", v.activations},
                      {"input_quant_sites", v.input_quant_sites},
                      {"quantized", v.activations_quantized},
                      {"weights_only_twin", v.weights_only_twin},
                      {"activations_only_twin", v.activations_only_twin}};
  if (v.output.measured) {
    const OutputError& o = v.output;
    x["output_error"] = {{"tokens", o.tokens},          {"kl_mean", num(o.kl_mean)},   {"kl_max", num(o.kl_max)},
                         {"top1", num(o.top1)},         {"cosine_mean", num(o.cosine_mean)},
                         {"ppl_ref", num(o.ppl_ref)},   {"ppl_quant", num(o.ppl_quant)},
                         {"ppl_delta", num(o.ppl_delta)}};
  } else {
    x["output_error"] = nullptr;
  }
  for (const auto& [role, s] : v.per_role) x["per_role"][role] = stats_json(s);
  x["per_layer"] = json::array();
  for (const auto& [layer, s] : v.per_layer) {
    json l = stats_json(s);
    l["layer"] = layer;
    x["per_layer"].push_back(l);
  }
  x["worst_experts"] = json::array();
  for (const auto& e : v.worst_experts) x["worst_experts"].push_back(expert_json(e));
  x["experts"] = json::array();
  for (const auto& e : v.experts) x["experts"].push_back(expert_json(e));
  x["sites"] = json::array();
  for (const auto& e : v.sites)
    x["sites"].push_back({{"site", e.site}, {"role", role_name(e.role)}, {"layer", e.layer}, {"expert", e.expert},
                          {"proj", e.proj}, {"format", e.format}, {"block_size", e.block_size},
                          {"shape", {e.rows, e.cols}}, {"bits_per_weight", e.bits_per_weight},
                          {"sqnr_db", num(e.sqnr_db)}, {"rel_err", num(e.rel_err)}});
  if (v.aux.from_export)
    x["export_aux"] = {{"tensors", v.aux.tensors},
                       {"differing", v.aux.differing},
                       {"other_dtype", v.aux.other_dtype},
                       {"differing_tensors", v.aux.differing_tensors}};
  else
    x["export_aux"] = nullptr;
  x["skipped_by_reason"] = v.skipped;
  x["warnings"] = v.warnings;
  return x;
}

json pick_json(const CompareResult& r, const Pick& pick) {
  json pj = {{"within_db", pick.within_db},
             {"metric", pick.by_output ? "kl_mean (output error)" : "mean_sqnr_db over quantized sites"},
             {"text", pick.text}};
  if (pick.by_output) pj["max_kl"] = pick.max_kl;
  if (pick.by_output) pj["none_within_max_kl"] = pick.none_fits;
  pj["best"] = pick.best >= 0 ? json(r.variants[pick.best].name) : json(nullptr);
  pj["chosen"] = pick.chosen >= 0 ? json(r.variants[pick.chosen].name) : json(nullptr);
  pj["pareto"] = json::array();
  for (int i : pick.pareto) pj["pareto"].push_back(r.variants[i].name);
  return pj;
}

void md_output_error(std::ostringstream& md, const CompareResult& r) {
  if (r.eval.measured) {
    md << "## Output error (fake-quantized vs unquantized model)\n\n"
       << "| variant | activations | expected size | bits/weight | mean KL (nats) | max KL | top-1 agreement | logit "
          "cosine | ppl | ppl delta |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& v : r.variants) {
      const OutputError& o = v.output;
      md << "| " << v.name << " | " << v.activations << " | " << human_bytes(v.expected_bytes) << " | "
         << weight_bits_cell(v) << " | " << kl_text(o.kl_mean) << " | "
         << kl_text(o.kl_max) << " | " << svg::number(100.0 * o.top1, 2) << "% | " << svg::number(o.cosine_mean, 6)
         << " | " << svg::number(o.ppl_quant, 4) << " | " << (o.ppl_delta >= 0 ? "+" : "") << svg::number(o.ppl_delta, 4)
         << " |\n";
    }
    md << "\n";
  }
}

void md_size_and_error(std::ostringstream& md, const CompareResult& r) {
  md << "## Size and weight error\n\n";
  md << "| variant | formats | quantized sites | expected size | smaller by | bits/weight | mean SQNR dB | worst SQNR dB "
        "| worst site | mean rel. error |\n|---|---|---:|---:|---:|---:|---:|---:|---|---:|\n";
  for (const auto& v : r.variants) {
    const bool any = v.all.quantized > v.all.exact;
    const std::string none = no_weight_text(v);  // "-", or the activations-only row's dash
    md << "| " << v.name << " | " << formats_cell(v) << " | " << v.all.quantized << " / " << v.sites_total
       << " | " << human_bytes(v.expected_bytes) << " | " << svg::number(ratio(v), 2) << "x | " << weight_bits_cell(v)
       << " | " << (any ? db(v.all.mean_sqnr_db) : none) << " | " << (any ? db(v.all.min_sqnr_db) : none) << " | "
       << (any ? v.all.worst_site : none) << " | " << (any ? svg::number(v.all.mean_rel_err, 4) : none) << " |\n";
  }
}

void md_roles(std::ostringstream& md, const CompareResult& r) {
  // Roles that any variant quantized.
  std::vector<std::string> roles;
  for (const auto& v : r.variants)
    for (const auto& [role, s] : v.per_role)
      if (s.quantized && std::find(roles.begin(), roles.end(), role) == roles.end()) roles.push_back(role);
  std::sort(roles.begin(), roles.end());
  md << "\n## SQNR per role (mean / worst, dB)\n\n| variant |";
  for (const auto& role : roles) md << " " << role << " |";
  md << "\n|---|";
  for (size_t i = 0; i < roles.size(); ++i) md << "---:|";
  md << "\n";
  for (const auto& v : r.variants) {
    md << "| " << v.name << " |";
    for (const auto& role : roles) {
      auto it = v.per_role.find(role);
      md << " " << (it == v.per_role.end() || v.activations_only_twin ? no_weight_text(v) : stats_cell(it->second)) << " |";
    }
    md << "\n";
  }
}

void md_worst_experts(std::ostringstream& md, const CompareResult& r) {
  md << "\n## Worst experts\n\n";
  bool any_experts = false;
  for (const auto& v : r.variants) {
    if (v.worst_experts.empty()) continue;
    any_experts = true;
    md << "### " << v.name << "\n\n| layer | expert | SQNR dB | rel. error | worst projection |\n|---:|---:|---:|---:|---|\n";
    for (const auto& e : v.worst_experts)
      md << "| " << e.layer << " | " << e.expert << " | " << db(e.sqnr_db) << " | " << svg::number(e.rel_err, 4) << " | "
         << e.worst_proj << " (" << db(e.worst_proj_sqnr_db) << " dB) |\n";
    md << "\n";
  }
  if (!any_experts) md << "No variant quantized routed experts.\n\n";
}

void md_skipped(std::ostringstream& md, const CompareResult& r) {
  md << "## Skipped sites and warnings\n\n";
  for (const auto& v : r.variants) {
    md << "- **" << v.name << "** (" << v.source << ", export " << v.export_format << "):";
    if (v.skipped.empty()) md << " nothing skipped";
    for (const auto& [reason, n] : v.skipped) md << " " << n << " x " << reason << ";";
    md << "\n";
    for (const auto& w : v.warnings) md << "  - warning: " << w << "\n";
  }
}

void md_definitions(std::ostringstream& md) {
  md << "\n## Definitions\n\n"
     << "- SQNR per site: 10 log10(||w||^2 / ||w - deq||^2), w the stored weight, deq its quantize-dequantize round "
        "trip exactly as `moeq quantize` computes it (expert stacks per layer, gate/up sharing the per-tensor amax).\n"
     << "- Mean SQNR: mean of per-site dB over quantized sites; worst: the lowest site.\n"
     << "- Expert SQNR: one expert's quantized projections together (energies summed).\n"
     << "- Expected size: stored tensors at their stored size, quantized sites at the format's bits per weight "
        "(codes and scales); the exact export adds headers and layout padding.\n"
     << "- Output error (with --eval): over positions 0..S-2 of every sample; KL(P_ref || P_quant) per token in nats, "
        "averaged; top-1: argmax agreement; ppl: exp(mean NLL of the next id); cosine: of the two logit vectors.\n"
     << "- Activations: `W4A4 (activations from calib.h5)` / `W8A8 (...)`: the inputs of the recipe's input_quant "
        "linears are fake-quantized as the deployed kernels do (FP8 static per-tensor; NVFP4 static global scale and "
        "dynamic E4M3 scales per 16 inputs), with the export's input scales (per expert for routed experts); "
        "`(weights only)` rows are the same recipes without it; `(activations only)` rows (--activations-only) "
        "the source weights with it.\n"
     << "- report.json holds every site, layer and expert; report.html has the charts.\n";
}

}  // namespace

nlohmann::ordered_json compare_json(const CompareResult& r, const Pick& pick) {
  json j;
  j["tool"] = "moeq compare";
  j["model"] = r.model;
  j["plugin"] = r.plugin;
  j["device"] = r.device;
  j["layers"] = r.layers;
  j["experts_per_layer"] = r.experts_per_layer;
  j["output_error"] = output_error_json(r);
  j["definitions"] = {
      {"sqnr_db", "10*log10(||w||^2 / ||w - dequant(quant(w))||^2) per site, summed in double; null when exact"},
      {"rel_err", "||w - dequant(quant(w))|| / ||w|| (Frobenius) per site"},
      {"mean_sqnr_db", "mean of the per-site SQNR in dB over quantized sites with a non-zero error"},
      {"expert_sqnr_db", "SQNR of one expert over all its quantized projections (energies summed)"},
      {"expected_bytes", "every stored tensor at its stored size, quantized sites at the format's bits_per_weight"},
      {"bits_per_weight", "over quantized sites, scales included; null when the variant quantizes no weight"},
      {"export_aux", "--exports rows: the aux tensors (norms, biases, ...) the forward took from the export, how many "
                     "differ from the source's values (AWQ-folded norms, say) or dtype; null for recipe rows"},
      {"activations", "whether the output error fake-quantized the inputs of the recipe's input_quant linears (--calib: "
                      "input scales from calib.h5, as the export carries them); weights_only_twin: the same recipe "
                      "with activations unquantized, a reference row that is never picked; activations_only_twin "
                      "(--activations-only): the source weights with the recipe's activation quantization, a reference "
                      "row that is never picked"}};
  j["pick"] = pick_json(r, pick);
  j["variants"] = json::array();
  for (const auto& v : r.variants) j["variants"].push_back(variant_json(v));
  return j;
}

std::string compare_markdown(const CompareResult& r, const Pick& pick) {
  std::ostringstream md;
  md << "# moeq compare\n\n";
  md << "- model: `" << r.model << "` (plugin " << r.plugin << "), device " << r.device << "\n";
  md << "- " << output_error_note(r) << "\n\n";
  md_output_error(md, r);
  md_size_and_error(md, r);
  md_roles(md, r);
  md << "\n`-`: not quantized by that variant (protected roles: router, embeddings, lm_head, unless a rule names them).\n";
  md << "\n## Which to pick\n\n" << pick.text << "\n";
  if (!r.eval.measured)
    md << "\nWeight SQNR ranks formats on this model's weights; it does not replace an output-quality check (see above).\n";
  else
    md << "\nKL and top-1 are measured on the eval data given; they rank the formats for this model, not for every "
          "task (they are no substitute for a task benchmark of the chosen export).\n";
  md_worst_experts(md, r);
  md_skipped(md, r);
  md_definitions(md);
  return md.str();
}

void write_compare_report(const std::string& dir, const CompareResult& r, double within_db, double max_kl) {
  refuse_output_over_input(dir, "-o", r.model, "the source checkpoint");
  for (const auto& v : r.variants)  // --exports: their directories are inputs too
    if (!v.reference_row() && std::filesystem::is_directory(v.source))
      refuse_output_over_input(dir, "-o", v.source, "the export " + v.name);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error(dir + ": cannot create the report directory: " + ec.message());
  const Pick pick = pick_variant(r, within_db, max_kl);
  auto put = [&](const std::string& name, const std::string& text) {
    std::ofstream out(dir + "/" + name, std::ios::binary);
    out << text;
    if (!out) throw Error(dir + "/" + name + ": cannot write");
  };
  put("report.json", compare_json(r, pick).dump(1) + "\n");
  put("report.md", compare_markdown(r, pick));
  put("report.html", compare_html(r, pick));
}

}  // namespace moeq
