#pragma once
#include <cstdint>
// The skipped-layers report: for every weight of the source checkpoint, its site, role,
// format or the reason it was skipped, bytes before and after; totals per role; the
// expert coverage line; warnings. Written as report.json and report.md beside the export.
#include <map>
#include <string>
#include <vector>

#include "calib/calib_file.h"
#include "io/checkpoint.h"
#include "model/site.h"
#include "recipe/recipe.h"

namespace moeq {

struct ReportData {
  std::string model, plugin, export_format, device;
  Recipe recipe;
  std::vector<std::string> warnings;
  std::map<std::string, uint64_t> bytes_after;  // site name -> bytes written for it
  uint64_t source_bytes = 0, export_bytes = 0;
  // Calibration (quantize --calib): the file's statistics and the input scale of each site.
  const CalibData* calib = nullptr;
  std::string calib_path;
  std::map<std::string, float> input_scales;
  // MXFP4-source experts quantized to NVFP4 (quant/mxfp4_to_nvfp4.h): 32-blocks carried over
  // exactly, and those re-quantized.
  int64_t mxfp4_exact_blocks = 0, mxfp4_requantized_blocks = 0;
};

void write_report(const std::string& dir, const ReportData& d, const Plan& plan, const SiteMap& map,
                  const Checkpoint& ck);

}  // namespace moeq
