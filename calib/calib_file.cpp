#include "calib/calib_file.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "calib/h5.h"
#include "core/error.h"

namespace moeq {

const CalibSite* CalibData::find(const std::string& site_name) const {
  for (const auto& s : sites)
    if (s.name == site_name) return &s;
  return nullptr;
}

std::vector<const CalibSite*> CalibData::fallbacks() const {
  std::vector<const CalibSite*> out;
  for (const auto& s : sites)
    if (s.fallback) out.push_back(&s);
  return out;
}

void write_calib_file(const std::string& path, const CalibData& d) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  try {
    h5::File f = h5::File::create(tmp);
    f.attr("/", "format", std::string("moeq-calib"));
    f.attr("/", "format_version", kCalibFormatVersion);
    f.attr("/", "tool_version", d.tool_version);
    f.attr("/", "model_fingerprint", d.model_fingerprint);
    f.attr("/", "model_summary", d.model_summary);
    f.attr("/", "model_dir", d.model_dir);
    f.attr("/", "data_description", d.data_description);
    f.attr("/", "samples", d.samples);
    f.attr("/", "seq_len", d.seq_len);
    f.attr("/", "tokens", d.tokens);
    f.attr("/", "device", d.device);
    f.attr("/", "dtype", d.dtype);
    f.attr("/", "created_utc", d.created_utc);
    f.attr("/", "all_experts_stats", static_cast<int64_t>(d.all_experts_stats));
    f.attr("/", "seconds", d.seconds);
    f.attr("/", "peak_device_bytes", d.peak_device_bytes);
    f.attr("/", "fallback_rule", d.fallback_rule);

    f.make_group("/sites");
    std::vector<std::string> names, modules;
    std::vector<int64_t> layer, expert;
    std::vector<float> amax;
    std::vector<uint8_t> fallback;
    for (const auto& s : d.sites) {
      names.push_back(s.name);
      modules.push_back(s.module);
      layer.push_back(s.layer);
      expert.push_back(s.expert);
      amax.push_back(s.amax);
      fallback.push_back(s.fallback ? 1 : 0);
    }
    f.write("/sites/name", names);
    f.write("/sites/module", modules);
    f.write("/sites/layer", layer);
    f.write("/sites/expert", expert);
    f.write("/sites/amax", amax);
    f.write("/sites/fallback", fallback);
    for (const auto& s : d.sites) {
      if (s.channel_amax.empty()) continue;
      f.make_group("/channel_amax");
      f.write("/channel_amax/" + s.name, s.channel_amax);
    }
    f.make_group("/moe_layers");
    for (const auto& l : d.layers) {
      const std::string g = "/moe_layers/" + std::to_string(l.layer);
      f.make_group(g);
      f.attr(g, "layer", l.layer);
      f.write(g + "/tokens_per_expert", l.tokens_per_expert);
      f.write(g + "/router_load", l.router_load);
      f.write(g + "/router_weight", l.router_weight);
    }
    f.write("/unobserved", d.unobserved);
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw Error(path + ": cannot rename the finished calibration file into place (" + ec.message() + ")");
  }
}

CalibData read_calib_file(const std::string& path) {
  const h5::File f = h5::File::open(path);
  if (f.attr_string("/", "format") != "moeq-calib") throw Error(path + ": not a moeq calibration file (format attribute)");
  const int64_t version = f.attr_int("/", "format_version");
  if (version > kCalibFormatVersion)
    throw Error(path + ": calibration file format version " + std::to_string(version) + " is newer than this moeq reads (" +
                std::to_string(kCalibFormatVersion) + "); update moeq or re-run moeq calibrate");
  CalibData d;
  d.tool_version = f.attr_string("/", "tool_version");
  d.model_fingerprint = f.attr_string("/", "model_fingerprint");
  d.model_summary = f.attr_string("/", "model_summary");
  d.model_dir = f.attr_string("/", "model_dir");
  d.data_description = f.attr_string("/", "data_description");
  d.samples = f.attr_int("/", "samples");
  d.seq_len = f.attr_int("/", "seq_len");
  d.tokens = f.attr_int("/", "tokens");
  d.device = f.attr_string("/", "device");
  d.dtype = f.attr_string("/", "dtype");
  d.created_utc = f.attr_string("/", "created_utc");
  d.all_experts_stats = f.attr_int("/", "all_experts_stats") != 0;
  d.seconds = f.attr_double("/", "seconds");
  d.peak_device_bytes = f.attr_int("/", "peak_device_bytes");
  d.fallback_rule = f.attr_string("/", "fallback_rule");

  const auto names = f.read_strings("/sites/name");
  const auto modules = f.read_strings("/sites/module");
  const auto layer = f.read_i64("/sites/layer");
  const auto expert = f.read_i64("/sites/expert");
  const auto amax = f.read_f32("/sites/amax");
  const auto fallback = f.read_u8("/sites/fallback");
  const size_t n = names.size();
  if (modules.size() != n || layer.size() != n || expert.size() != n || amax.size() != n || fallback.size() != n)
    throw Error(path + ": the /sites datasets have different lengths (damaged file)");
  for (size_t i = 0; i < n; ++i) {
    CalibSite s{names[i], modules[i], layer[i], expert[i], amax[i], fallback[i] != 0, {}};
    if (f.exists("/channel_amax/" + s.name)) s.channel_amax = f.read_f32("/channel_amax/" + s.name);
    d.sites.push_back(std::move(s));
  }
  for (const auto& g : f.members("/moe_layers")) {
    const std::string p = "/moe_layers/" + g;
    CalibLayer l;
    l.layer = f.attr_int(p, "layer");
    l.tokens_per_expert = f.read_i64(p + "/tokens_per_expert");
    l.router_load = f.read_i64(p + "/router_load");
    l.router_weight = f.read_f32(p + "/router_weight");
    d.layers.push_back(std::move(l));
  }
  std::sort(d.layers.begin(), d.layers.end(), [](const CalibLayer& a, const CalibLayer& b) { return a.layer < b.layer; });
  d.unobserved = f.read_strings("/unobserved");
  return d;
}

}  // namespace moeq
