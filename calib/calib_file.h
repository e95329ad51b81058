#pragma once
// calib.h5: the activation statistics `moeq calibrate` writes and `moeq quantize --calib`
// reads. The layout is documented in docs/calibration.md. No ATen here: the file is plain
// numbers and names, so reading it costs the quantize pipeline nothing.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/config.h"

namespace moeq {

constexpr int64_t kCalibFormatVersion = 1;

// The amax of one linear site's input.
struct CalibSite {
  std::string name;    // canonical site name (layers.3.experts.17.gate)
  std::string module;  // the module name a per-linear export uses
  int64_t layer = -1, expert = -1;
  float amax = 0;
  // The expert received no token: amax comes from the fallback rule (docs/calibration.md),
  // not from its own inputs.
  bool fallback = false;
  std::vector<float> channel_amax;  // per input channel; empty unless requested
};

// Routing statistics of one MoE layer.
struct CalibLayer {
  int64_t layer = -1;
  std::vector<int64_t> tokens_per_expert;  // rows each expert's statistics cover
  std::vector<int64_t> router_load;        // top-k selections per expert (the router's decisions)
  std::vector<float> router_weight;        // sum of the top-k weights per expert
};

struct CalibData {
  // The model it was made for.
  std::string model_fingerprint, model_summary, model_dir;
  // How it was made.
  std::string data_description, tool_version, device, dtype, created_utc;
  int64_t samples = 0, seq_len = 0, tokens = 0;
  bool all_experts_stats = false;
  double seconds = 0;
  int64_t peak_device_bytes = 0;
  std::string fallback_rule;  // how fallback amax values were derived (text)

  std::vector<CalibSite> sites;      // every site with statistics, in site order
  std::vector<CalibLayer> layers;    // MoE layers, ascending
  std::vector<std::string> unobserved;  // sites the forward reported no input for

  const CalibSite* find(const std::string& site_name) const;
  std::vector<const CalibSite*> fallbacks() const;
};

// Writes `path` atomically (a temporary file beside it, renamed on success).
void write_calib_file(const std::string& path, const CalibData& d);
// Throws moeq::Error naming the file and what is wrong (missing, not HDF5, not a moeq
// calibration file, newer format version).
CalibData read_calib_file(const std::string& path);

// A hash of the model's architecture (config.json fields that shape the network) and of
// every tensor's name, shape and dtype, as 16 hex digits; and a one-line summary of it.
std::string model_fingerprint(const ModelConfig& cfg, const Checkpoint& ck);
std::string model_summary(const ModelConfig& cfg, const Checkpoint& ck);

// Throws moeq::Error naming both models when `d` was made for another model.
void require_calib_matches(const CalibData& d, const std::string& calib_path, const ModelConfig& cfg,
                           const Checkpoint& ck, const std::string& model_dir);

}  // namespace moeq
