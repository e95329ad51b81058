// `moeq verify OUT [--source MODEL] [--json]` and `moeq report OUT`.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "app/cli/commands.h"
#include "app/cli/parser.h"
#include "core/error.h"
#include "export/verify.h"

namespace moeq::cli {

int cmd_verify(const std::vector<std::string>& argv) {
  std::string dir, source;
  bool json = false;
  Command c("verify", "Re-read an export (any layout): check every expert's weights and scales; with --source, decode and report the error",
            "EXPORT_DIR [--source MODEL_DIR] [--json]", "moeq verify out/nvfp4 --source demo/qwen3_moe_fused");
  c.positional("EXPORT_DIR", dir, "directory written by moeq quantize");
  c.option("--source", source, "the checkpoint it was quantized from: decode every weight and report its error");
  c.flag("--json", json, "print JSON instead of text");
  if (!c.parse(argv)) return 0;
  const VerifyResult r = verify_export(dir, source);
  std::map<std::string, std::vector<const SiteCheck*>> by_format;
  for (const auto& s : r.sites) by_format[s.format.empty() ? "unquantized" : s.format].push_back(&s);
  if (json) {
    nlohmann::ordered_json j;
    j["export"] = dir;
    j["layout"] = r.layout;
    j["layers_with_experts"] = r.layers;
    j["experts_expected"] = r.experts_expected;
    j["experts_quantized"] = r.experts_quantized;
    j["mtp"] = {{"copied", r.mtp_copied}, {"quantized", r.mtp_quantized}};
    j["towers"] = {{"copied", r.tower_copied}, {"quantized", r.tower_quantized}};
    j["problems"] = r.problems;
    j["notes"] = r.notes;
    for (const auto& s : r.sites)
      j["sites"].push_back({{"site", s.site}, {"module", s.module}, {"format", s.format}, {"sqnr_db", s.sqnr_db},
                            {"max_abs", s.max_abs}, {"rel_err", s.rel_err}, {"compared", s.compared}});
    std::printf("%s\n", j.dump(1).c_str());
  } else {
    std::printf("export        %s (%s)\n", dir.c_str(), r.layout.c_str());
    std::printf("experts       %zu expert weights expected in %zu layers, %zu quantized and decoded\n", r.experts_expected,
                r.layers, r.experts_quantized);
    if (!source.empty())
      std::printf("mtp / towers  %zu MTP tensors copied byte for byte, %zu MTP sites quantized; %zu tower tensors copied, "
                  "%zu quantized\n", r.mtp_copied, r.mtp_quantized, r.tower_copied, r.tower_quantized);
    for (const auto& [fmt, v] : by_format) {
      size_t compared = 0;
      double min_db = 1e9, sum_db = 0, max_abs = 0;
      const SiteCheck* worst = nullptr;
      for (const auto* s : v)
        if (s->compared) {
          compared++;
          sum_db += s->sqnr_db;
          max_abs = std::max(max_abs, s->max_abs);
          if (s->sqnr_db < min_db) min_db = s->sqnr_db, worst = s;
        }
      std::printf("%-13s %zu sites", fmt.c_str(), v.size());
      if (compared)
        std::printf(", vs source: mean SQNR %.2f dB, worst %.2f dB (%s), max abs err %.4g", sum_db / compared, min_db,
                    worst->site.c_str(), max_abs);
      std::printf("\n");
    }
    for (const auto& n : r.notes) std::printf("note: %s\n", n.c_str());
    for (const auto& p : r.problems) std::printf("PROBLEM: %s\n", p.c_str());
    std::printf("%s: %zu problems\n", r.problems.empty() ? "OK" : "FAILED", r.problems.size());
  }
  return r.problems.empty() ? 0 : 1;
}

int cmd_report(const std::vector<std::string>& argv) {
  std::string dir;
  bool json = false;
  Command c("report", "Print an export's report: every weight, its format or why it was skipped, bytes before and after",
            "EXPORT_DIR [--json]", "moeq report out/nvfp4");
  c.positional("EXPORT_DIR", dir, "directory written by moeq quantize");
  c.flag("--json", json, "print report.json instead of report.md");
  if (!c.parse(argv)) return 0;
  const std::string f = dir + (json ? "/report.json" : "/report.md");
  std::ifstream in(f);
  if (!in) throw Error(f + ": no report here (was this directory written by moeq quantize?)");
  std::printf("%s", std::string(std::istreambuf_iterator<char>(in), {}).c_str());
  return 0;
}

}  // namespace moeq::cli
