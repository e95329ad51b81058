#include "export/verify.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "calib/calibrators/awq_job.h"
#include "core/error.h"
#include "export/layout.h"
#include "formats/format.h"
#include "tensor/aten_view.h"
#include "io/checkpoint.h"
#include "model/model.h"
#include "model/plugin.h"

namespace moeq {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

float stored_scalar(const Checkpoint& ck, const std::string& name) {
  return tensor_view(ck, name).to(at::kFloat).reshape({-1})[0].item<float>();
}

bool all_positive_finite(const at::Tensor& t) {
  const at::Tensor f = t.to(at::kFloat);
  return at::isfinite(f).all().item<bool>() && (f > 0).all().item<bool>();
}

namespace {

// Below these a decoded weight does not come from its source (the formats' SQNR on
// Gaussian weights: nvfp4/mxfp4/int4 g128 about 17-21 dB, nf4 about 20 dB, fp4 about 16 dB,
// fp8 about 31 dB, int8 about 41 dB).
double sqnr_floor_db(const std::string& format) {
  const QuantFormat* f = find_format(format);
  return f ? f->traits().sqnr_floor_db : 10.0;
}

// The source's MTP and tower tensors must reach the export: unchanged byte for byte, or for a
// linear site a rule quantized, as that (already decoded and checked) site.
void check_copied_roles(const Checkpoint& src, const SiteMap& src_map, const Checkpoint& out,
                        const std::set<std::string>& quantized_sites, VerifyResult* res) {
  std::map<std::string, std::pair<Role, std::string>> want;  // tensor -> role, site ("" for aux)
  for (const auto& s : src_map.sites)
    if (s.role == Role::Mtp || s.role == Role::Tower) want[s.view.tensor] = {s.role, s.name};
  for (const auto& a : src_map.aux)
    if (a.role == Role::Mtp || a.role == Role::Tower) want[a.tensor] = {a.role, ""};
  for (const auto& [t, rs] : want) {
    const bool mtp = rs.first == Role::Mtp;
    if (!rs.second.empty() && quantized_sites.count(rs.second)) {
      (mtp ? res->mtp_quantized : res->tower_quantized)++;
      continue;
    }
    const std::string label = std::string(role_name(rs.first)) + " tensor '" + t + "'";
    if (!out.has(t)) {
      res->problems.push_back(label + " of the source is missing from the export");
      continue;
    }
    const TensorInfo &a = src.info(t), &b = out.info(t);
    if (a.dtype != b.dtype || a.shape != b.shape)
      res->problems.push_back(label + ": export holds " + dtype_name(b.dtype) + " " + shape_str(b.shape) + ", source " +
                              dtype_name(a.dtype) + " " + shape_str(a.shape) + ", and no rule quantized it");
    else if (std::memcmp(src.data(t), out.data(t), a.nbytes()) != 0)
      res->problems.push_back(label + ": copied with different bytes than the source's");
    else
      (mtp ? res->mtp_copied : res->tower_copied)++;
  }
}

}  // namespace

VerifyResult verify_export(const std::string& dir, const std::string& source_dir) {
  const ModelConfig cfg = load_config(dir);
  const ArchPlugin& plugin = plugin_for(cfg);
  auto ck = Checkpoint::open(dir);
  const auto opened = open_export_reader(dir, cfg, ck);
  const ExportLayout& layout = *opened.first;
  const std::unique_ptr<ExportReader>& reader = opened.second;
  VerifyResult res;
  res.layout = layout.name;

  std::vector<const TensorInfo*> infos;
  for (const auto& t : reader->weights()) infos.push_back(&t);
  const SiteMap map = map_sites(plugin, cfg, infos, dir);
  for (const auto& u : map.unclaimed) res.problems.push_back("tensor '" + u + "' is not claimed by plugin " + plugin.family);

  std::shared_ptr<Checkpoint> src;
  // moeq's AWQ exports (calib/calibrators/awq_job.h) keep the folded scales beside the weights.
  std::map<std::string, const Site*> src_sites;
  Model source;
  const SiteMap& src_map = source.sites;
  if (!source_dir.empty()) {
    source = open_model(source_dir);
    src = source.checkpoint;
    for (const auto& s : src_map.sites) src_sites[s.name] = &s;
  }
  const std::shared_ptr<const AwqScales> awq = read_awq_scales(dir, src ? &source : nullptr);
  if (awq) res.notes.push_back(std::string(kAwqScalesFile) + ": AWQ input scales (experts: down's folded into down and up, gate_up's "
                               "into the norm before the MoE and its readers; attention: qkv's into input_layernorm and its readers, "
                               "o's into o and v_proj's rows); with --source the source weights are compared folded");
  if (awq && src) {
    // The tensors the fold changes that the export copies (norms, an unquantized router or
    // shared expert): byte-equal to the folded source, cast to its dtype.
    size_t checked = 0;
    for (const auto& [name, t] : awq_folded_tensors(*awq, *src, src_map)) {
      if (!ck->has(name)) continue;
      const TensorInfo& b = ck->info(name);
      if (b.nbytes() != static_cast<uint64_t>(t.nbytes()) || dtype_name(b.dtype) != dtype_name(src->info(name).dtype)) continue;  // quantized
      checked++;
      if (std::memcmp(ck->data(name), t.data_ptr(), b.nbytes()) != 0)
        res.problems.push_back("tensor '" + name + "': differs from the AWQ-folded source (" + std::string(kAwqScalesFile) +
                               " scales): copied unfolded?");
    }
    if (checked) res.notes.push_back(std::to_string(checked) + " copied tensors (norms, routers, biases) match the AWQ-folded source");
  }

  // Experts expected: the source's expert sites, or config.num_experts per layer with a router.
  std::map<int64_t, std::set<std::string>> expected;  // layer -> "E.proj"
  if (src) {
    for (const auto& s : src_map.sites)
      if (s.role == Role::Expert) expected[s.layer].insert(std::to_string(s.expert) + "." + s.proj);
  } else {
    for (const auto& s : map.sites)
      if (s.role == Role::Router && s.proj == "router" && cfg.num_experts > 0)
        for (int64_t e = 0; e < cfg.num_experts; ++e)
          for (const char* p : {"gate", "up", "down"}) expected[s.layer].insert(std::to_string(e) + "." + p);
  }
  std::map<int64_t, std::set<std::string>> found;
  std::set<std::string> used, quantized_sites;
  struct Shared { std::string name; float scale, input; };
  std::map<std::string, Shared> shared;  // module -> the scales gate and up must agree on

  for (const auto& s : map.sites) {
    if (s.role == Role::Expert) found[s.layer].insert(std::to_string(s.expert) + "." + s.proj);
    const std::string m = s.module;
    const std::string label = s.name + " (" + m + ")";
    bool ok = true;
    auto bad = [&](const std::string& msg) { res.problems.push_back(label + ": " + msg); ok = false; };
    const ReadSite rs = reader->read(s, bad, used);
    SiteCheck sc{s.name, m, rs.format, 0, 0, 0, false};
    if (rs.format.empty()) {
      if (s.role == Role::Expert && !reader->excluded(m))
        bad("expert stored as " + rs.stored_dtype + " but not excluded by the export config (" + layout.name +
            " exclusion list): skipped silently?");
      else if (s.role == Role::Expert)
        res.notes.push_back(label + ": excluded by the export config");
    }
    if (!rs.tensor_scale_name.empty()) shared[m] = {rs.tensor_scale_name, rs.tensor_scale, rs.input_scale};
    if (!rs.format.empty()) quantized_sites.insert(s.name);
    if (rs.q && ok) {
      at::Tensor deq = format_by_name(rs.format).dequantize(*rs.q, at::kFloat);
      if (!at::isfinite(deq).all().item<bool>()) bad("decodes to NaN/Inf");
      if (s.role == Role::Expert) res.experts_quantized++;
      auto it = src_sites.find(s.name);
      if (src && it == src_sites.end()) bad("no such site in the source checkpoint");
      if (src && it != src_sites.end()) {
        at::Tensor ref = site_weight(*src, *it->second).to(at::kFloat);
        if (awq) ref = awq_fold_weight(*awq, *it->second, ref);  // AWQ exports hold the folded weights
        if (ref.sizes() != deq.sizes()) {
          bad("decoded shape " + shape_str(deq.sizes().vec()) + " differs from the source " + shape_str(ref.sizes().vec()));
        } else {
          const double sig = ref.pow(2).sum().item<double>(), err = (ref - deq).pow(2).sum().item<double>();
          sc.sqnr_db = err > 0 ? 10 * std::log10(sig / err) : 300.0;
          sc.max_abs = (ref - deq).abs().max().item<double>();
          sc.rel_err = sig > 0 ? std::sqrt(err / sig) : 0;
          sc.compared = true;
          const double floor_db = sqnr_floor_db(rs.format);
          if (sc.sqnr_db < floor_db)
            bad("SQNR " + std::to_string(sc.sqnr_db) + " dB against the source is below " + std::to_string(floor_db) +
                " dB: the weight does not decode to its source");
        }
      }
    }
    res.sites.push_back(sc);
  }
  // gate and up of one expert (or MLP) must share their per-tensor and input scales (vLLM fuses them).
  for (const auto& [m, v] : shared) {
    const auto pos = m.rfind("gate_proj");
    std::string up;
    if (pos != std::string::npos && pos + 9 == m.size()) up = m.substr(0, pos) + "up_proj";
    else if (ends_with(m, ".w1")) up = m.substr(0, m.size() - 3) + ".w3";
    if (up.empty() || !shared.count(up)) continue;
    const Shared& u = shared.at(up);
    if (v.scale != u.scale)
      res.problems.push_back(m + " / " + up + ": gate and up carry different " + v.name + " (" + std::to_string(v.scale) +
                             " vs " + std::to_string(u.scale) + "); vLLM fuses them with one scale");
    if (v.input != u.input)
      res.problems.push_back(m + " / " + up + ": gate and up carry different input scales (" + std::to_string(v.input) +
                             " vs " + std::to_string(u.input) + ")");
  }
  if (src) check_copied_roles(*src, src_map, *ck, quantized_sites, &res);
  for (const auto& n : reader->params())
    if (!used.count(n)) res.problems.push_back("tensor '" + n + "' is a quantization parameter with no quantized weight beside it");
  for (const auto& [layer, want] : expected) {
    res.layers++;
    res.experts_expected += want.size();
    std::vector<std::string> missing;
    for (const auto& k : want)
      if (!found[layer].count(k)) missing.push_back(k);
    if (!missing.empty())
      res.problems.push_back("layer " + std::to_string(layer) + ": " + std::to_string(missing.size()) +
                             " expert weights missing (first: expert " + missing[0] + ")");
  }
  return res;
}

}  // namespace moeq
