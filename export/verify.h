#pragma once
// `moeq verify OUT [--source MODEL]`: re-reads an export (ours or another tool's in the
// same layout), lists every expert of every layer, checks presence, dtypes, shapes,
// finite non-zero scales and gate/up scale agreement, decodes every quantized weight and,
// with a source, measures its error. Problems name the layer, expert and tensor.
#include <string>
#include <vector>

namespace moeq {

struct SiteCheck {
  std::string site, module, format;  // format "" when stored unquantized
  double sqnr_db = 0, max_abs = 0, rel_err = 0;  // against the source, when given
  bool compared = false;
};

struct VerifyResult {
  std::string layout;                  // the export layout that wrote it (export/layout.h): "modelopt", ...
  std::vector<std::string> problems;   // each names the expert/tensor
  std::vector<std::string> notes;      // intentional exclusions and the like
  std::vector<SiteCheck> sites;
  size_t experts_expected = 0, experts_quantized = 0, layers = 0;
  // With a source: its MTP / tower tensors, each present in the export byte for byte (or,
  // for a site a rule quantized, as that quantized site).
  size_t mtp_copied = 0, mtp_quantized = 0, tower_copied = 0, tower_quantized = 0;
};

VerifyResult verify_export(const std::string& export_dir, const std::string& source_dir);

}  // namespace moeq
