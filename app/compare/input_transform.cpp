#include "app/compare/input_transform.h"

#include <algorithm>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "app/compare/act_fake_quant.h"
#include "core/error.h"
#include "calib/calibrators/input_scales.h"
#include "formats/format.h"

namespace moeq {
namespace {

using FakeQuant = at::Tensor (*)(const at::Tensor&, const at::Tensor&);

FakeQuant fake_quant_of(const std::string& format) {
  const QuantFormat* f = find_format(format);
  const InputQuant how = f ? f->traits().input_quant : InputQuant::None;
  if (how == InputQuant::DynamicBlocks) return &nvfp4_input_fake_quant;
  if (how == InputQuant::StaticTensor) return &fp8_input_fake_quant;
  throw Error("format " + format + " has no activation quantization in moeq (input_quant: nvfp4, fp8)");
}

// The input quantization of one (layer, projection) of the routed experts.
struct ExpertInputs {
  std::vector<std::string> format;  // per expert, "" when its input stays unquantized
  std::vector<float> scale;         // per expert (1 where unquantized)
  // On the forward's device, built at first use: scales [E], and per format a mask [E].
  at::Tensor dev_scale;
  std::vector<std::pair<std::string, at::Tensor>> dev_masks;
  bool uniform = false;  // every expert quantized, one format: no masks needed
};

struct State {
  std::map<std::string, std::pair<FakeQuant, float>> dense;             // site -> (function, scale)
  std::map<std::pair<int64_t, std::string>, ExpertInputs> experts;      // (layer, "gate_up" | "down")

  at::Tensor linear(const Site& s, const at::Tensor& x) const {
    auto it = dense.find(s.name);
    if (it == dense.end()) return x;
    return it->second.first(x, at::scalar_tensor(it->second.second, x.options().dtype(at::kFloat)));
  }

  at::Tensor routed(int64_t layer, const std::string& proj, const at::Tensor& x, const at::Tensor& expert_of_row) {
    auto it = experts.find({layer, proj});
    if (it == experts.end() || x.size(0) == 0) return x;
    ExpertInputs& e = it->second;
    if (!e.dev_scale.defined() || e.dev_scale.device() != x.device()) {
      e.dev_scale = at::tensor(e.scale, at::kFloat).to(x.device());
      e.dev_masks.clear();
      std::set<std::string> fmts;
      for (const auto& f : e.format)
        if (!f.empty()) fmts.insert(f);
      e.uniform = fmts.size() == 1 && std::find(e.format.begin(), e.format.end(), "") == e.format.end();
      for (const auto& f : fmts) {
        std::vector<int64_t> m;
        for (const auto& g : e.format) m.push_back(g == f ? 1 : 0);
        e.dev_masks.emplace_back(f, at::tensor(m, at::kLong).to(x.device()).to(at::kBool));
      }
    }
    const at::Tensor row_scale = e.dev_scale.index_select(0, expert_of_row);
    if (e.uniform) return fake_quant_of(e.dev_masks[0].first)(x, row_scale);
    at::Tensor y = x;
    for (const auto& [f, mask] : e.dev_masks)
      y = at::where(mask.index_select(0, expert_of_row).unsqueeze(1), fake_quant_of(f)(x, row_scale), y);
    return y;
  }
};

}  // namespace

std::string activation_label(const std::set<std::string>& formats) {
  std::string out;
  for (const auto& f : formats) {
    const QuantFormat* q = find_format(f);
    const std::string label = q ? q->traits().activation_label : "";
    out += (out.empty() ? "" : " + ") + (label.empty() ? f : label);
  }
  return out;
}

InputTransforms plan_input_transforms(const Plan& plan, const CalibData& calib, const std::string& calib_path) {
  const std::map<std::string, InputScale> scales = input_scales(plan, calib, calib_path);
  if (scales.empty()) return InputTransforms{};
  // Routed experts: the number of experts of each MoE layer, from every expert site of the plan.
  std::map<int64_t, int64_t> num_experts;
  for (const auto& sp : plan.sites)
    if (sp.site->role == Role::Expert && sp.site->expert >= 0)
      num_experts[sp.site->layer] = std::max(num_experts[sp.site->layer], sp.site->expert + 1);
  std::vector<InputSite> sites;
  for (const auto& sp : plan.sites) {
    auto it = scales.find(sp.site->name);
    if (it != scales.end()) sites.push_back({sp.site, sp.format, it->second.scale});
  }
  return input_transforms_of(sites, num_experts, "compare --calib");
}

InputTransforms input_transforms_of(const std::vector<InputSite>& sites, const std::map<int64_t, int64_t>& num_experts,
                                    const std::string& where) {
  InputTransforms out;
  if (sites.empty()) return out;
  auto st = std::make_shared<State>();
  auto experts_of = [&](int64_t layer) {
    auto it = num_experts.find(layer);
    return it == num_experts.end() ? int64_t(0) : it->second;
  };
  // gate_up: (layer, expert) -> the format and scale of gate and of up ("" when not input-quantized).
  std::map<std::pair<int64_t, int64_t>, std::map<std::string, std::pair<std::string, float>>> gate_up;
  for (const InputSite& is : sites) {
    const Site& s = *is.site;
    fake_quant_of(is.format);  // an error for formats without activation quantization
    out.sites++;
    out.formats.insert(is.format);
    if (s.role != Role::Expert || s.expert < 0) {
      st->dense[s.name] = {fake_quant_of(is.format), is.scale};
      continue;
    }
    if (s.proj == "gate" || s.proj == "up") {
      gate_up[{s.layer, s.expert}][s.proj] = {is.format, is.scale};
      continue;
    }
    ExpertInputs& e = st->experts[{s.layer, "down"}];
    if (e.format.empty()) {
      e.format.assign(experts_of(s.layer), "");
      e.scale.assign(experts_of(s.layer), 1.0f);
    }
    e.format[s.expert] = is.format;
    e.scale[s.expert] = is.scale;
  }
  for (const auto& [key, projs] : gate_up) {
    const auto g = projs.find("gate"), u = projs.find("up");
    const std::string gf = g == projs.end() ? "" : g->second.first, uf = u == projs.end() ? "" : u->second.first;
    if (gf != uf)
      throw Error(where + ": layer " + std::to_string(key.first) + ", expert " + std::to_string(key.second) +
                  ": gate's input is quantized " + (gf.empty() ? "not at all" : "as " + gf) + " and up's " +
                  (uf.empty() ? "not at all" : "as " + uf) +
                  "; gate and up share one input (vLLM fuses them), so both need the same input_quant and format");
    if (g->second.second != u->second.second)
      throw Error(where + ": layer " + std::to_string(key.first) + ", expert " + std::to_string(key.second) +
                  ": gate and up carry different input scales (" + std::to_string(g->second.second) + " vs " +
                  std::to_string(u->second.second) + ") for their one input");
    ExpertInputs& e = st->experts[{key.first, "gate_up"}];
    if (e.format.empty()) {
      e.format.assign(experts_of(key.first), "");
      e.scale.assign(experts_of(key.first), 1.0f);
    }
    e.format[key.second] = g->second.first;
    e.scale[key.second] = g->second.second;
  }
  out.linear = [st](const Site& s, const at::Tensor& x) { return st->linear(s, x); };
  if (!st->experts.empty())
    out.experts = [st](int64_t layer, const std::string& proj, const at::Tensor& x, const at::Tensor& rows) {
      return st->routed(layer, proj, x, rows);
    };
  return out;
}

}  // namespace moeq
