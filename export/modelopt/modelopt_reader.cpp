// `moeq verify` for ModelOpt unified HF exports: per linear `weight` (U8 packed NVFP4 or
// F8_E4M3), `weight_scale`, `weight_scale_2` (NVFP4), `input_scale`; exclusions in
// exclude_modules (config.json and hf_quant_config.json).
#include <fstream>
#include <map>

#include "core/error.h"
#include "export/modelopt/modelopt_layout.h"
#include "export/modelopt/modelopt_formats.h"
#include "export/reader.h"
#include "tensor/aten_view.h"

namespace moeq {
namespace {

class ModelOptReader : public ExportReader {
 public:
  ModelOptReader(const std::string& dir, const nlohmann::json& qc, std::shared_ptr<Checkpoint> ck) : ck_(std::move(ck)) {
    quant_algo_ = qc.value("quant_algo", "");
    for (const auto& m : qc.value("exclude_modules", nlohmann::json::array())) excluded_.insert(m.get<std::string>());
    if (auto g = qc.find("config_groups"); g != qc.end())
      for (const auto& [name, grp] : g->items())
        if (grp.contains("input_activations") && !grp["input_activations"].is_null()) input_quant_ = true;
    if (auto l = qc.find("quantized_layers"); l != qc.end())
      for (const auto& [m, v] : l->items()) layer_algo_[m] = v.value("quant_algo", "");
    std::ifstream hf(dir + "/hf_quant_config.json");
    if (hf) {
      auto j = nlohmann::json::parse(hf, nullptr, false);
      if (!j.is_discarded() && j.contains("quantization")) {
        if (quant_algo_.empty()) quant_algo_ = j["quantization"].value("quant_algo", "");
        for (const auto& m : j["quantization"].value("exclude_modules", nlohmann::json::array())) excluded_.insert(m.get<std::string>());
      }
    }
    if (quant_algo_ != "NVFP4" && quant_algo_ != "W4A16_NVFP4" && quant_algo_ != "FP8" && quant_algo_ != "MIXED_PRECISION")
      throw Error(dir + ": quant_algo '" + quant_algo_ + "' is not verifiable (NVFP4, W4A16_NVFP4, FP8, MIXED_PRECISION)");
    // Scales belong to their weight; everything else is for the plugin to map.
    for (const auto& n : ck_->names()) {
      if (ends_with(n, ".weight_scale") || ends_with(n, ".weight_scale_2") || ends_with(n, ".input_scale")) params_.insert(n);
      else weights_.push_back(ck_->info(n));
    }
  }

  const std::vector<TensorInfo>& weights() const override { return weights_; }
  const std::set<std::string>& params() const override { return params_; }
  bool excluded(const std::string& m) const override {
    if (excluded_.count(m)) return true;
    for (const auto& e : excluded_) {  // `PATH*` and `PATH.*`: PATH and everything under it, as vLLM reads them
      if (e.size() < 2 || e.back() != '*') continue;
      const std::string stem = e.substr(0, e.size() - (e.compare(e.size() - 2, 2, ".*") == 0 ? 2 : 1));
      if (m == stem || m.rfind(stem + ".", 0) == 0) return true;
    }
    return false;
  }

  ReadSite read(const Site& s, const Complain& bad, std::set<std::string>& used) const override {
    const Checkpoint& ck = *ck_;
    const std::string m = s.module;
    const TensorInfo& w = ck.info(s.view.tensor);
    ReadSite rs;
    rs.stored_dtype = dtype_name(w.dtype);
    if (!ck.has(m + ".weight_scale")) {
      if (w.dtype == DType::U8 || w.dtype == DType::F8_E4M3)
        bad("quantized weight (" + rs.stored_dtype + ") without its weight_scale");
      return rs;
    }
    std::string algo = quant_algo_ == "MIXED_PRECISION" ? (layer_algo_.count(m) ? layer_algo_.at(m) : "") : quant_algo_;
    if (algo.empty()) algo = w.dtype == DType::U8 ? "NVFP4" : "FP8";
    const bool nvfp4 = algo == "NVFP4" || algo == "W4A16_NVFP4";
    const QuantFormat* fmt = nvfp4 ? find_format_where([](const FormatTraits& t) { return modelopt_nvfp4_layout(t); })
                                   : find_format_where([](const FormatTraits& t) { return modelopt_fp8_layout(t); });
    if (!fmt) throw Error("moeq has no format for ModelOpt quant_algo " + algo);
    rs.format = fmt->name();
    used.insert(m + ".weight_scale");
    const TensorInfo& ws = ck.info(m + ".weight_scale");
    QuantizedTensor q;
    q.format = rs.format;
    bool ok = true;
    auto fail = [&](const std::string& msg) { bad(msg); ok = false; };
    if (nvfp4) {
      rs.tensor_scale_name = "weight_scale_2";
      const int64_t out = w.shape.size() == 2 ? w.shape[0] : -1, in = w.shape.size() == 2 ? w.shape[1] * 2 : -1;
      q.shape = {out, in};
      if (w.dtype != DType::U8 || w.shape.size() != 2) fail("weight should be U8 [out, in/2], is " + rs.stored_dtype + " " + shape_str(w.shape));
      if (ws.dtype != DType::F8_E4M3 || ws.shape != std::vector<int64_t>{out, in / 16})
        fail("weight_scale should be F8_E4M3 " + shape_str({out, in / 16}) + ", is " + dtype_name(ws.dtype) + " " + shape_str(ws.shape));
      if (!ck.has(m + ".weight_scale_2")) {
        fail("missing weight_scale_2");
      } else {
        used.insert(m + ".weight_scale_2");
        const float v = stored_scalar(ck, m + ".weight_scale_2");
        if (!std::isfinite(v) || v <= 0) fail("weight_scale_2 is " + std::to_string(v) + " (must be finite and > 0)");
        rs.tensor_scale = v;
      }
    } else {
      rs.tensor_scale_name = "weight_scale";
      q.shape = w.shape;
      if (w.dtype != DType::F8_E4M3) fail("weight should be F8_E4M3, is " + rs.stored_dtype);
      if (ws.numel() != 1) fail("weight_scale should be a scalar, is " + shape_str(ws.shape));
      else if (float v = stored_scalar(ck, m + ".weight_scale"); !std::isfinite(v) || v <= 0)
        fail("weight_scale is " + std::to_string(v) + " (must be finite and > 0)");
      rs.tensor_scale = ok ? stored_scalar(ck, m + ".weight_scale") : 0.f;
    }
    if (ck.has(m + ".input_scale")) {
      used.insert(m + ".input_scale");
      const float v = stored_scalar(ck, m + ".input_scale");
      if (!std::isfinite(v) || v <= 0) fail("input_scale is " + std::to_string(v) + " (must be finite and > 0)");
      rs.input_scale = v;
      // W4A16_NVFP4 keeps an input_scale for the kernel's alpha but runs activations unquantized.
      rs.input_quantized = algo != "W4A16_NVFP4";
      rs.act_scale = v;
    } else if (input_quant_) {
      fail("missing input_scale (the export quantizes activations; vLLM would load it as 0 and produce NaN)");
    }
    if (!ok) return rs;
    q.parts["weight"] = tensor_view(ck, s.view.tensor);
    q.parts["weight_scale"] = !nvfp4 ? tensor_view(ck, m + ".weight_scale").reshape({}) : tensor_view(ck, m + ".weight_scale");
    if (nvfp4) q.parts["weight_scale_2"] = tensor_view(ck, m + ".weight_scale_2").reshape({});
    rs.q = std::move(q);
    return rs;
  }

 private:
  std::shared_ptr<Checkpoint> ck_;
  std::string quant_algo_;
  bool input_quant_ = false;
  std::set<std::string> excluded_, params_;
  std::map<std::string, std::string> layer_algo_;
  std::vector<TensorInfo> weights_;
};

}  // namespace

std::unique_ptr<ExportReader> open_modelopt_reader(const std::string& dir, const nlohmann::json& qc, std::shared_ptr<Checkpoint> ck) {
  return std::make_unique<ModelOptReader>(dir, qc, std::move(ck));
}

}  // namespace moeq
