#include "export/verify.h"

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "formats/format.h"
#include "io/aten_view.h"
#include "io/checkpoint.h"
#include "model/plugin.h"

namespace moeq {
namespace {

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

// What the export's config says about its layout.
struct ExportKind {
  std::string layout;         // modelopt
  std::string quant_algo;     // NVFP4, FP8, MIXED_PRECISION
  bool input_quant = false;   // activations quantized: input_scale required
  std::set<std::string> excluded;
  std::map<std::string, std::string> layer_algo;  // MIXED_PRECISION per module
};

ExportKind read_kind(const std::string& dir, const ModelConfig& cfg) {
  ExportKind k;
  auto qc = cfg.raw.find("quantization_config");
  if (qc == cfg.raw.end()) throw Error(dir + "/config.json: no quantization_config: not a quantized export");
  const std::string method = qc->value("quant_method", "");
  if (method != "modelopt")
    throw Error(dir + ": quant_method '" + method + "' is not verifiable yet (moeq verify reads modelopt exports)");
  k.layout = "modelopt";
  k.quant_algo = qc->value("quant_algo", "");
  for (const auto& m : qc->value("exclude_modules", nlohmann::json::array())) k.excluded.insert(m.get<std::string>());
  if (auto g = qc->find("config_groups"); g != qc->end())
    for (const auto& [name, grp] : g->items())
      if (grp.contains("input_activations") && !grp["input_activations"].is_null()) k.input_quant = true;
  if (auto l = qc->find("quantized_layers"); l != qc->end())
    for (const auto& [m, v] : l->items()) k.layer_algo[m] = v.value("quant_algo", "");
  std::ifstream hf(dir + "/hf_quant_config.json");
  if (hf) {
    auto j = nlohmann::json::parse(hf, nullptr, false);
    if (!j.is_discarded() && j.contains("quantization")) {
      if (k.quant_algo.empty()) k.quant_algo = j["quantization"].value("quant_algo", "");
      for (const auto& m : j["quantization"].value("exclude_modules", nlohmann::json::array())) k.excluded.insert(m.get<std::string>());
    }
  }
  if (k.quant_algo != "NVFP4" && k.quant_algo != "FP8" && k.quant_algo != "MIXED_PRECISION")
    throw Error(dir + ": quant_algo '" + k.quant_algo + "' is not verifiable (NVFP4, FP8, MIXED_PRECISION)");
  return k;
}

float scalar(const Checkpoint& ck, const std::string& name) {
  return tensor_view(ck, name).to(at::kFloat).reshape({-1})[0].item<float>();
}

}  // namespace

VerifyResult verify_export(const std::string& dir, const std::string& source_dir) {
  const ModelConfig cfg = load_config(dir);
  const ArchPlugin& plugin = plugin_for(cfg);
  auto ck = Checkpoint::open(dir);
  const ExportKind kind = read_kind(dir, cfg);
  VerifyResult res;
  res.layout = kind.layout;

  // Map only the tensors a plugin knows (weights and aux); scales belong to their weight.
  const char* scale_suffixes[] = {".weight_scale", ".weight_scale_2", ".input_scale"};
  std::vector<const TensorInfo*> infos;
  std::set<std::string> scale_tensors;
  for (const auto& n : ck->names()) {
    bool is_scale = false;
    for (const char* s : scale_suffixes) is_scale = is_scale || ends_with(n, s);
    if (is_scale) scale_tensors.insert(n);
    else infos.push_back(&ck->info(n));
  }
  const SiteMap map = map_sites(plugin, cfg, infos, dir);
  for (const auto& u : map.unclaimed) res.problems.push_back("tensor '" + u + "' is not claimed by plugin " + plugin.family);
  std::set<std::string> used_scales;

  std::shared_ptr<Checkpoint> src;
  std::map<std::string, const Site*> src_sites;
  SiteMap src_map;
  if (!source_dir.empty()) {
    src = Checkpoint::open(source_dir);
    src_map = map_sites(plugin_for(load_config(source_dir)), load_config(source_dir), *src);
    for (const auto& s : src_map.sites) src_sites[s.name] = &s;
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
  std::map<std::string, std::pair<float, float>> ws2_in;  // module -> (weight_scale_2, input_scale)

  for (const auto& s : map.sites) {
    if (s.role == Role::Expert) found[s.layer].insert(std::to_string(s.expert) + "." + s.proj);
    const std::string m = s.module;
    const std::string label = s.name + " (" + m + ")";
    const TensorInfo& w = ck->info(s.view.tensor);
    const bool has_scale = ck->has(m + ".weight_scale");
    SiteCheck sc{s.name, m, "", 0, 0, 0, false};
    if (!has_scale) {
      if (w.dtype == DType::U8 || w.dtype == DType::F8_E4M3)
        res.problems.push_back(label + ": quantized weight (" + dtype_name(w.dtype) + ") without its weight_scale");
      else if (s.role == Role::Expert && !kind.excluded.count(m))
        res.problems.push_back(label + ": expert stored as " + std::string(dtype_name(w.dtype)) +
                               " but not listed in exclude_modules (skipped silently?)");
      else if (s.role == Role::Expert)
        res.notes.push_back(label + ": excluded by the export config");
    } else {
      std::string algo = kind.quant_algo == "MIXED_PRECISION" ? (kind.layer_algo.count(m) ? kind.layer_algo.at(m) : "") : kind.quant_algo;
      if (algo.empty()) algo = w.dtype == DType::U8 ? "NVFP4" : "FP8";
      sc.format = algo == "NVFP4" ? "nvfp4" : "fp8";
      used_scales.insert(m + ".weight_scale");
      const TensorInfo& ws = ck->info(m + ".weight_scale");
      QuantizedTensor q;
      q.format = sc.format;
      bool ok = true;
      auto bad = [&](const std::string& msg) { res.problems.push_back(label + ": " + msg); ok = false; };
      if (sc.format == "nvfp4") {
        const int64_t out = w.shape.size() == 2 ? w.shape[0] : -1, in = w.shape.size() == 2 ? w.shape[1] * 2 : -1;
        q.shape = {out, in};
        if (w.dtype != DType::U8 || w.shape.size() != 2) bad("weight should be U8 [out, in/2], is " + std::string(dtype_name(w.dtype)) + " " + shape_str(w.shape));
        if (ws.dtype != DType::F8_E4M3 || ws.shape != std::vector<int64_t>{out, in / 16})
          bad("weight_scale should be F8_E4M3 " + shape_str({out, in / 16}) + ", is " + dtype_name(ws.dtype) + " " + shape_str(ws.shape));
        if (!ck->has(m + ".weight_scale_2")) bad("missing weight_scale_2");
        else {
          used_scales.insert(m + ".weight_scale_2");
          const float v = scalar(*ck, m + ".weight_scale_2");
          if (!std::isfinite(v) || v <= 0) bad("weight_scale_2 is " + std::to_string(v) + " (must be finite and > 0)");
          ws2_in[m].first = v;
        }
      } else {
        q.shape = w.shape;
        if (w.dtype != DType::F8_E4M3) bad("weight should be F8_E4M3, is " + std::string(dtype_name(w.dtype)));
        if (ws.numel() != 1) bad("weight_scale should be a scalar, is " + shape_str(ws.shape));
        else if (float v = scalar(*ck, m + ".weight_scale"); !std::isfinite(v) || v <= 0)
          bad("weight_scale is " + std::to_string(v) + " (must be finite and > 0)");
        ws2_in[m].first = ok ? scalar(*ck, m + ".weight_scale") : 0.f;
      }
      if (ck->has(m + ".input_scale")) {
        used_scales.insert(m + ".input_scale");
        const float v = scalar(*ck, m + ".input_scale");
        if (!std::isfinite(v) || v <= 0) bad("input_scale is " + std::to_string(v) + " (must be finite and > 0)");
        ws2_in[m].second = v;
      } else if (kind.input_quant) {
        bad("missing input_scale (the export quantizes activations; vLLM would load it as 0 and produce NaN)");
      }
      if (ok) {
        q.parts["weight"] = tensor_view(*ck, s.view.tensor);
        q.parts["weight_scale"] = sc.format == "fp8" ? tensor_view(*ck, m + ".weight_scale").reshape({}) : tensor_view(*ck, m + ".weight_scale");
        if (sc.format == "nvfp4") q.parts["weight_scale_2"] = tensor_view(*ck, m + ".weight_scale_2").reshape({});
        at::Tensor deq = format_by_name(sc.format).dequantize(q, at::kFloat);
        if (!at::isfinite(deq).all().item<bool>()) bad("decodes to NaN/Inf");
        if (s.role == Role::Expert) res.experts_quantized++;
        auto it = src_sites.find(s.name);
        if (src && it == src_sites.end()) bad("no such site in the source checkpoint");
        if (src && it != src_sites.end()) {
          at::Tensor ref = site_weight(*src, *it->second).to(at::kFloat);
          if (ref.sizes() != deq.sizes()) bad("decoded shape differs from the source " + shape_str(ref.sizes().vec()));
          else {
            const double sig = ref.pow(2).sum().item<double>(), err = (ref - deq).pow(2).sum().item<double>();
            sc.sqnr_db = err > 0 ? 10 * std::log10(sig / err) : 300.0;
            sc.max_abs = (ref - deq).abs().max().item<double>();
            sc.rel_err = sig > 0 ? std::sqrt(err / sig) : 0;
            sc.compared = true;
            const double floor_db = sc.format == "nvfp4" ? 10.0 : 20.0;
            if (sc.sqnr_db < floor_db)
              bad("SQNR " + std::to_string(sc.sqnr_db) + " dB against the source is below " + std::to_string(floor_db) +
                  " dB: the weight does not decode to its source");
          }
        }
      }
    }
    res.sites.push_back(sc);
  }
  // gate and up of one expert (or MLP) must share weight_scale_2 and input_scale (vLLM fuses them).
  for (const auto& [m, v] : ws2_in) {
    const auto pos = m.rfind("gate_proj");
    std::string up;
    if (pos != std::string::npos && pos + 9 == m.size()) up = m.substr(0, pos) + "up_proj";
    else if (ends_with(m, ".w1")) up = m.substr(0, m.size() - 3) + ".w3";
    if (up.empty() || !ws2_in.count(up)) continue;
    const auto& u = ws2_in.at(up);
    if (v.first != u.first)
      res.problems.push_back(m + " / " + up + ": gate and up carry different " +
                             std::string(ck->has(m + ".weight_scale_2") ? "weight_scale_2" : "weight_scale") + " (" +
                             std::to_string(v.first) + " vs " + std::to_string(u.first) + "); vLLM fuses them with one scale");
    if (v.second != u.second)
      res.problems.push_back(m + " / " + up + ": gate and up carry different input_scale (" + std::to_string(v.second) +
                             " vs " + std::to_string(u.second) + ")");
  }
  for (const auto& n : scale_tensors)
    if (!used_scales.count(n)) res.problems.push_back("tensor '" + n + "' is a scale with no quantized weight beside it");
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
