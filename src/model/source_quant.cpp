#include "model/source_quant.h"

#include <fnmatch.h>

#include <map>

#include "core/error.h"
#include "io/dtype.h"

namespace moeq {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_text(const std::vector<int64_t>& sh) {
  std::string t = "[";
  for (size_t i = 0; i < sh.size(); ++i) t += (i ? ", " : "") + std::to_string(sh[i]);
  return t + "]";
}

// `X.weight_scale_inv` -> `X.weight`; `X_scales` -> `X_blocks`; else "".
std::string weight_of_scale(const std::string& name) {
  if (ends_with(name, ".weight_scale_inv")) return name.substr(0, name.size() - 10);
  if (ends_with(name, "_scales")) return name.substr(0, name.size() - 7) + "_blocks";
  return "";
}

std::map<std::string, const TensorInfo*> by_name(const std::vector<const TensorInfo*>& tensors) {
  std::map<std::string, const TensorInfo*> m;
  for (const TensorInfo* t : tensors) m[t->name] = t;
  return m;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The modules_to_not_convert entry naming this module (exact, a parent module, or a `*`
// pattern as gpt-oss writes them), or "".
std::string not_converted_by(const SourceQuantConfig& q, const std::string& module) {
  for (const std::string& p : q.modules_to_not_convert)
    if (fnmatch(p.c_str(), module.c_str(), 0) == 0 || fnmatch((p + ".*").c_str(), module.c_str(), 0) == 0) return p;
  return "";
}

}  // namespace

const char* source_format_name(SourceFormat f) {
  switch (f) {
    case SourceFormat::Plain: return "plain";
    case SourceFormat::Fp8Block: return "fp8-block";
    case SourceFormat::Mxfp4: return "mxfp4";  // format-name-ok: a source checkpoint format
  }
  return "?";
}

bool is_source_scale(const std::string& name, const std::unordered_set<std::string>& names) {
  const std::string w = weight_of_scale(name);
  return !w.empty() && names.count(w) > 0;
}

void attach_source_scales(const ModelConfig& config, const std::vector<const TensorInfo*>& tensors,
                          const std::string& where, SiteMap* out) {
  const auto infos = by_name(tensors);
  const SourceQuantConfig& q = config.source_quant;
  std::map<std::string, const Site*> scale_site;
  for (Site& s : out->sites) {
    WeightView& v = s.view;
    const TensorInfo& w = *infos.at(v.tensor);
    if (ends_with(v.tensor, ".weight") && infos.count(v.tensor + "_scale_inv")) {
      const std::string sname = v.tensor + "_scale_inv";
      const TensorInfo& sc = *infos.at(sname);
      if (w.dtype != DType::F8_E4M3)
        throw Error(where + ": tensor '" + v.tensor + "' has a weight_scale_inv but is " + dtype_name(w.dtype) +
                    ", not F8_E4M3 (FP8-block sources only)");
      if (q.quant_method != "fp8" || q.block_rows <= 0)  // format-name-ok: HF quant_method
        throw Error(where + ": tensor '" + sname + "' is an FP8 block scale, but config.json has no quantization_config "
                    "with quant_method fp8 and weight_block_size (got quant_method '" + q.quant_method + "')");
      if (!q.fmt.empty() && q.fmt != "e4m3")
        throw Error(where + ": config.json quantization_config.fmt '" + q.fmt + "' is not supported (e4m3 only)");
      if (sc.dtype != DType::F32 && sc.dtype != DType::BF16)
        throw Error(where + ": tensor '" + sname + "' is " + dtype_name(sc.dtype) + ", expected F32 or BF16 scale_inv");
      std::vector<int64_t> want = w.shape;
      if (want.size() < 2) throw Error(where + ": tensor '" + v.tensor + "' is not a matrix");
      want[want.size() - 2] = ceil_div(want[want.size() - 2], q.block_rows);
      want.back() = ceil_div(want.back(), q.block_cols);
      if (sc.shape != want)
        throw Error(where + ": tensor '" + sname + "' has shape " + shape_text(sc.shape) + ", expected " +
                    shape_text(want) + " for weight " + shape_text(w.shape) + " in [" + std::to_string(q.block_rows) +
                    ", " + std::to_string(q.block_cols) + "] blocks");
      v.source = SourceFormat::Fp8Block;
      v.scale = sname;
      v.block_rows = q.block_rows;
      v.block_cols = q.block_cols;
      scale_site[sname] = &s;
    } else if (ends_with(v.tensor, "_blocks")) {
      const std::string sname = v.tensor.substr(0, v.tensor.size() - 7) + "_scales";
      auto it = infos.find(sname);
      if (it == infos.end())
        throw Error(where + ": MXFP4 tensor '" + v.tensor + "' has no scale tensor '" + sname + "'");
      const TensorInfo& sc = *it->second;
      if (w.dtype != DType::U8 || sc.dtype != DType::U8 || w.shape.size() < 2 || w.shape.back() != 16 ||
          sc.shape != std::vector<int64_t>(w.shape.begin(), w.shape.end() - 1))
        throw Error(where + ": MXFP4 tensors '" + v.tensor + "' " + dtype_name(w.dtype) + " " + shape_text(w.shape) +
                    " and '" + sname + "' " + dtype_name(sc.dtype) + " " + shape_text(sc.shape) +
                    " do not fit U8 [.., out, in/32, 16] blocks with U8 [.., out, in/32] E8M0 scales");
      if (q.quant_method != "mxfp4")  // format-name-ok: HF quant_method
        throw Error(where + ": tensor '" + v.tensor + "' is MXFP4, but config.json quantization_config.quant_method is '" +
                    q.quant_method + "', not mxfp4");
      v.source = SourceFormat::Mxfp4;
      v.scale = sname;
      v.block_rows = 1;
      v.block_cols = 32;
      scale_site[sname] = &s;
    }
  }
  std::unordered_set<std::string> names;
  for (const TensorInfo* t : tensors) names.insert(t->name);
  // A quantized weight in a module the config says is not converted: the config and the
  // tensors disagree, and a loader would read codes as weights.
  for (const Site& s : out->sites) {
    if (s.view.source == SourceFormat::Plain) continue;
    const std::string module = ends_with(s.view.tensor, ".weight") ? s.view.tensor.substr(0, s.view.tensor.size() - 7)
                                                                   : s.view.tensor.substr(0, s.view.tensor.rfind('.'));
    const std::string by = not_converted_by(q, module);
    if (!by.empty())
      throw Error(where + ": tensor '" + s.view.tensor + "' is stored " + source_format_name(s.view.source) +
                  ", but config.json quantization_config.modules_to_not_convert lists '" + by + "' for module '" + module + "'");
  }
  for (const TensorInfo* t : tensors) {
    if (!is_source_scale(t->name, names)) continue;
    auto r = scale_site.find(t->name);
    if (r == scale_site.end()) {  // the weight it scales is no site: nothing decodes it
      out->unclaimed.push_back(t->name);
      continue;
    }
    const Site& s = *r->second;
    out->source_scales.push_back(AuxTensor{t->name, s.role, s.layer,
                                           s.view.source == SourceFormat::Fp8Block ? "fp8-block weight_scale_inv"
                                                                                   : "mxfp4 E8M0 scales"});
  }
}

}  // namespace moeq
