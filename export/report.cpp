#include "model/fusion.h"
#include "export/report.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "calib/coverage.h"
#include "core/format_util.h"
#include "io/text_file.h"
#include "model/site_bytes.h"

namespace moeq {
namespace {

constexpr size_t kMdFallbackLines = 40;  // report.md lists this many fallbacks; report.json all

nlohmann::ordered_json calibration_json(const ReportData& d) {
  const CalibData& c = *d.calib;
  nlohmann::ordered_json cov = nlohmann::ordered_json::array();
  for (const auto& l : expert_coverage(c))
    cov.push_back({{"layer", l.layer}, {"experts", l.experts}, {"min", l.min}, {"median", l.median}, {"max", l.max},
                   {"zero_token_experts", l.zero_token_experts}});
  nlohmann::ordered_json fb = nlohmann::ordered_json::array();
  for (const auto* s : c.fallbacks()) fb.push_back({{"site", s->name}, {"module", s->module}, {"amax", s->amax}});
  return {{"file", d.calib_path},
          {"model_fingerprint", c.model_fingerprint},
          {"model", c.model_summary},
          {"data", c.data_description},
          {"samples", c.samples},
          {"seq_len", c.seq_len},
          {"tokens", c.tokens},
          {"device", c.device},
          {"dtype", c.dtype},
          {"all_experts_stats", c.all_experts_stats},
          {"created_utc", c.created_utc},
          {"tool_version", c.tool_version},
          {"input_scales", d.input_scales.size()},
          {"coverage", cov},
          {"fallback_rule", c.fallback_rule},
          {"fallbacks", fb},
          {"unobserved_sites", c.unobserved}};
}

void calibration_md(std::ostream& md, const ReportData& d) {
  const CalibData& c = *d.calib;
  md << "\n## Calibration\n\n";
  md << "- file: `" << d.calib_path << "` (" << c.tool_version << ", " << c.created_utc << ", device " << c.device << ", "
     << c.dtype << ")\n";
  md << "- data: " << c.data_description << "\n";
  md << "- samples: " << c.samples << " x " << c.seq_len << " tokens (" << c.tokens << " tokens)"
     << (c.all_experts_stats ? "; every expert saw every token (--all-experts-stats)" : "") << "\n";
  md << "- input scales written: " << d.input_scales.size() << " sites (gate and up of one expert share one)\n\n";
  const auto cov = expert_coverage(c);
  if (!cov.empty()) {
    md << "Tokens per expert:\n\n| layer | experts | min | median | max | experts with no token |\n|---:|---:|---:|---:|---:|---|\n";
    for (const auto& l : cov) {
      md << "| " << l.layer << " | " << l.experts << " | " << l.min << " | " << l.median << " | " << l.max << " | ";
      if (l.zero_token_experts.empty()) md << "none";
      for (size_t i = 0; i < l.zero_token_experts.size(); ++i) md << (i ? ", " : "") << l.zero_token_experts[i];
      md << " |\n";
    }
  }
  const auto fb = c.fallbacks();
  md << "\nFallbacks (" << fb.size() << "): " << (fb.empty() ? "none; every expert received tokens." : c.fallback_rule + ".") << "\n\n";
  for (size_t i = 0; i < fb.size() && i < kMdFallbackLines; ++i)
    md << "- " << fb[i]->name << " (`" << fb[i]->module << "`): amax " << fb[i]->amax << "\n";
  if (fb.size() > kMdFallbackLines) md << "- ... and " << fb.size() - kMdFallbackLines << " more (report.json lists all)\n";
}

}  // namespace

void write_report(const std::string& dir, const ReportData& d, const Plan& plan, const SiteMap& map,
                  const Checkpoint& ck) {
  struct RoleTotals { int64_t sites = 0, quantized = 0; uint64_t before = 0, after = 0; };
  std::map<std::string, RoleTotals> roles;
  nlohmann::ordered_json sites = nlohmann::ordered_json::array();
  int64_t experts = 0, experts_q = 0;
  std::map<std::string, int64_t> skip_reasons, calibrators;
  std::map<std::string, int64_t> source_actions;  // "fp8-block -> bf16 (decoded)": sites
  for (const auto& sp : plan.sites) {
    const Site& s = *sp.site;
    const uint64_t n = static_cast<uint64_t>(s.view.rows * s.view.cols);
    const SourceFormat src = s.view.source;
    const uint64_t before = stored_bytes(ck, s);
    auto it = d.bytes_after.find(s.name);
    const uint64_t after = it != d.bytes_after.end() ? it->second : before;
    auto& r = roles[role_name(s.role)];
    r.sites++;
    r.quantized += sp.quantize;
    r.before += before;
    r.after += after;
    if (s.role == Role::Expert) { experts++; experts_q += sp.quantize; }
    if (!sp.quantize) skip_reasons[sp.reason]++;
    sites.push_back({{"site", s.name}, {"role", role_name(s.role)}, {"tensor", s.view.tensor}, {"module", s.module},
                     {"format", sp.quantize ? nlohmann::ordered_json(sp.format) : nlohmann::ordered_json(nullptr)},
                     {"input_quant", sp.input_quant}, {"reason", sp.reason}, {"bytes_before", before}, {"bytes_after", after}});
    if (const std::string fg = fusion_group(s); !fg.empty()) sites.back()["fusion_group"] = fg;  // shares its scales with the group
    if (auto in = d.input_scales.find(s.name); in != d.input_scales.end()) sites.back()["input_scale"] = in->second;
    if (src != SourceFormat::Plain) {
      const std::string action = std::string("source ") + source_format_name(src) + " -> " +
                                 (sp.quantize ? sp.format : std::string("bf16 (decoded)"));
      sites.back()["source"] = source_format_name(src);
      sites.back()["source_action"] = action;
      source_actions[action]++;
    }
    if (sp.quantize) {
      sites.back()["calibrator"] = sp.calibrator.describe();
      if (!sp.calibrator.note.empty()) sites.back()["calibrator_note"] = sp.calibrator.note;
      const std::string k = sp.calibrator.describe() + (sp.calibrator.note.empty() ? "" : " (" + sp.calibrator.note + ")");
      calibrators[k]++;
    }
  }
  nlohmann::ordered_json others = nlohmann::ordered_json::array();
  for (const auto& a : map.aux) {
    const uint64_t b = ck.info(a.tensor).nbytes();
    auto& r = roles[role_name(a.role)];
    r.before += b;
    r.after += b;
    others.push_back({{"tensor", a.tensor}, {"role", role_name(a.role)}, {"what", a.what}, {"bytes", b},
                      {"action", "copied unchanged (not a linear weight)"}});
  }
  for (const auto& a : map.source_scales) {
    const uint64_t b = ck.info(a.tensor).nbytes();
    others.push_back({{"tensor", a.tensor}, {"role", role_name(a.role)}, {"what", a.what}, {"bytes", b},
                      {"action", "decoded with its weight (counted in the site's bytes), not written"}});
  }
  nlohmann::ordered_json unclaimed = nlohmann::ordered_json::array();
  for (const auto& u : map.unclaimed) {
    const uint64_t b = ck.info(u).nbytes();
    roles["unclaimed"].before += b;
    roles["unclaimed"].after += b;
    unclaimed.push_back({{"tensor", u}, {"bytes", b}, {"action", "copied unchanged: no rule of plugin " + d.plugin + " claims it"}});
  }
  // MTP layers and towers, listed apart: not part of the trunk, copied unless a rule names the role.
  struct Apart { int64_t sites = 0, quantized = 0, aux = 0; };
  Apart mtp, tower;
  for (const auto& sp : plan.sites) {
    Apart* a = sp.site->role == Role::Mtp ? &mtp : sp.site->role == Role::Tower ? &tower : nullptr;
    if (a) { a->sites++; a->quantized += sp.quantize; }
  }
  for (const auto& a : map.aux) {
    if (a.role == Role::Mtp) mtp.aux++;
    if (a.role == Role::Tower) tower.aux++;
  }
  auto apart_line = [](const char* what, const Apart& a) {
    return std::string(what) + ": " + std::to_string(a.sites) + " linear sites (" + std::to_string(a.quantized) +
           " quantized, " + std::to_string(a.sites - a.quantized) + " copied), " + std::to_string(a.aux) +
           " other tensors copied";
  };
  const std::string coverage = "experts quantized: " + std::to_string(experts_q) + " / " + std::to_string(experts);
  nlohmann::ordered_json j;
  j["model"] = d.model;
  j["plugin"] = d.plugin;
  j["recipe"] = {{"name", d.recipe.name}, {"path", d.recipe.path}, {"weight_only", d.recipe.weight_only}};
  j["export"] = d.export_format;
  j["device"] = d.device;
  j["source_bytes"] = d.source_bytes;
  j["export_bytes"] = d.export_bytes;
  j["size_ratio"] = static_cast<double>(d.source_bytes) / std::max<uint64_t>(1, d.export_bytes);
  j["experts"] = {{"quantized", experts_q}, {"total", experts}};
  j["coverage"] = coverage;
  j["mtp"] = {{"sites", mtp.sites}, {"quantized", mtp.quantized}, {"other_tensors", mtp.aux}};
  j["towers"] = {{"sites", tower.sites}, {"quantized", tower.quantized}, {"other_tensors", tower.aux}};
  for (const auto& [role, r] : roles)
    j["roles"][role] = {{"sites", r.sites}, {"quantized", r.quantized}, {"bytes_before", r.before}, {"bytes_after", r.after}};
  j["skipped_by_reason"] = skip_reasons;
  j["source_actions"] = source_actions;  // quantized-source sites: what became of them
  if (d.mxfp4_exact_blocks + d.mxfp4_requantized_blocks > 0)
    j["mxfp4_to_nvfp4"] = {{"exact_blocks", d.mxfp4_exact_blocks}, {"requantized_blocks", d.mxfp4_requantized_blocks}};
  j["weight_calibrators"] = calibrators;  // how the weight scales were chosen: sites per calibrator
  j["warnings"] = d.warnings;
  j["calibration"] = d.calib ? calibration_json(d) : nlohmann::ordered_json(nullptr);
  j["sites"] = sites;
  j["other_tensors"] = others;
  j["unclaimed"] = unclaimed;
  write_text_file(dir + "/report.json", j.dump(1) + "\n");

  std::ostringstream md;
  md << "# moeq quantization report\n\n";
  md << "- model: `" << d.model << "` (plugin " << d.plugin << ")\n";
  md << "- recipe: `" << d.recipe.name << "` (" << d.recipe.path << ")" << (d.recipe.weight_only ? ", weight-only" : "") << "\n";
  md << "- export: " << d.export_format << ", device " << d.device << "\n";
  md << "- size: " << human_bytes(d.source_bytes) << " -> " << human_bytes(d.export_bytes) << " ("
     << j["size_ratio"].get<double>() << "x smaller)\n";
  md << "- weight scales:";
  for (const auto& [k, n] : calibrators) md << " " << k << ": " << n << " sites;";
  md << (calibrators.empty() ? " none quantized\n" : "\n");
  md << "- **" << coverage << "**\n";
  if (mtp.sites + mtp.aux > 0) md << "- " << apart_line("MTP layers", mtp) << " (role mtp)\n";
  if (tower.sites + tower.aux > 0) md << "- " << apart_line("towers", tower) << " (role tower)\n";
  for (const auto& [action, count] : source_actions) md << "- " << action << ": " << count << " sites\n";
  if (d.mxfp4_exact_blocks + d.mxfp4_requantized_blocks > 0)
    md << "- mxfp4 -> nvfp4: " << d.mxfp4_exact_blocks << " blocks of 32 converted exactly, " << d.mxfp4_requantized_blocks
       << " re-quantized (their E8M0 scale has no E4M3 value under the expert's global scale)\n";
  md << "\n";
  md << "## Per role\n\n| role | sites | quantized | bytes before | bytes after |\n|---|---:|---:|---:|---:|\n";
  for (const auto& [role, r] : roles)
    md << "| " << role << " | " << r.sites << " | " << r.quantized << " | " << human_bytes(r.before) << " | "
       << human_bytes(r.after) << " |\n";
  md << "\n## Skipped, by reason\n\n";
  if (skip_reasons.empty()) md << "Nothing skipped.\n";
  for (const auto& [reason, n] : skip_reasons) md << "- " << n << " x " << reason << "\n";
  if (d.calib) calibration_md(md, d);
  md << "\n## Warnings\n\n";
  if (d.warnings.empty()) md << "None.\n";
  for (const auto& w : d.warnings) md << "- " << w << "\n";
  if (!map.unclaimed.empty()) {
    md << "\n## Tensors no plugin rule claims (copied unchanged)\n\n";
    for (const auto& u : map.unclaimed) md << "- `" << u << "`\n";
  }
  md << "\n## Every weight\n\n| site | role | format | reason | before | after |\n|---|---|---|---|---:|---:|\n";
  for (const auto& s : sites)
    md << "| " << s["site"].get<std::string>() << " | " << s["role"].get<std::string>() << " | "
       << (s["format"].is_null() ? "-" : s["format"].get<std::string>()) << " | " << s["reason"].get<std::string>() << " | "
       << s["bytes_before"].get<uint64_t>() << " | " << s["bytes_after"].get<uint64_t>() << " |\n";
  md << "\nOther tensors (" << others.size() << ": norms, biases, router extras) are copied unchanged; report.json lists them.\n";
  write_text_file(dir + "/report.md", md.str());
}

}  // namespace moeq
