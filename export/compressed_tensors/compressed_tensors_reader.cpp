// `moeq verify` for compressed-tensors exports (llm-compressor's layout, see
// export/compressed_tensors/compressed_tensors_writer.cpp): config_groups whose targets are `Linear`, exact
// module names or `re:` regexes (matched from the start, as Python's re.match), an ignore
// list, and per module the tensors of the group's format.
#include <cmath>
#include <regex>

#include "core/error.h"
#include "export/compressed_tensors/compressed_tensors_layout.h"
#include "export/compressed_tensors/ct_scheme.h"
#include "export/reader.h"
#include "tensor/aten_view.h"

namespace moeq {
namespace {

const char* kParams[] = {".weight_scale", ".weight_zero_point", ".weight_shape", ".weight_global_scale",
                         ".input_global_scale", ".input_scale", ".weight_g_idx"};

// A target or ignore entry as compressed-tensors' match_name reads it.
struct Pattern {
  std::string text;
  std::optional<std::regex> re;
  explicit Pattern(const std::string& t) : text(t) {
    if (t.rfind("re:", 0) == 0) re = std::regex(t.substr(3));
  }
  bool matches(const std::string& module) const {
    return re ? std::regex_search(module, *re, std::regex_constants::match_continuous) : text == module;
  }
};

struct Group {
  std::string name;
  CtGroupFormat f;
  bool all_linear = false;  // target `Linear`
  std::vector<Pattern> targets;
  std::string dynamic_input;  // input_activations moeq does not fake-quantize ("" when none or static)
};

// input_activations that quantize dynamically per token / group (FP8_DYNAMIC and the like): not
// reproduced by moeq's activation fake quantization (static scales; NVFP4's dynamic block scales
// under a static global scale are, as `dynamic: local`).
std::string dynamic_input_of(const std::string& name, const nlohmann::json& g) {
  const nlohmann::json in = g.value("input_activations", nlohmann::json());
  if (!in.is_object() || !in.contains("dynamic") || !in["dynamic"].is_boolean() || !in["dynamic"].get<bool>()) return "";
  return "config group " + name + " quantizes inputs dynamically (input_activations " + in.dump() + ")";
}

class CtReader : public ExportReader {
 public:
  CtReader(const std::string& dir, const nlohmann::json& qc, std::shared_ptr<Checkpoint> ck) : ck_(std::move(ck)) {
    const auto groups = qc.value("config_groups", nlohmann::json::object());
    if (!groups.is_object() || groups.empty()) throw Error(dir + ": compressed-tensors quantization_config has no config_groups");
    for (const auto& [name, g] : groups.items()) {
      Group grp{name, moeq_format_of(name, g), false, {}, dynamic_input_of(name, g)};
      for (const auto& t : g.value("targets", nlohmann::json::array())) {
        if (t.get<std::string>() == "Linear") grp.all_linear = true;
        else grp.targets.emplace_back(t.get<std::string>());
      }
      groups_.push_back(std::move(grp));
    }
    for (const auto& i : qc.value("ignore", nlohmann::json::array())) ignore_.emplace_back(i.get<std::string>());
    for (const auto& n : ck_->names()) {
      bool param = false;
      for (const char* p : kParams) param = param || ends_with(n, p);
      if (param) {
        params_.insert(n);
      } else if (ends_with(n, ".weight_packed")) {
        weights_.push_back(logical_weight(n));
      } else {
        weights_.push_back(ck_->info(n));
      }
    }
  }

  const std::vector<TensorInfo>& weights() const override { return weights_; }
  const std::set<std::string>& params() const override { return params_; }
  bool excluded(const std::string& m) const override { return group_of(m) == nullptr; }

  ReadSite read(const Site& s, const Complain& bad, std::set<std::string>& used) const override {
    const Checkpoint& ck = *ck_;
    const std::string m = s.module;
    const bool packed = ck.has(m + ".weight_packed");
    const TensorInfo& w = ck.info(packed ? m + ".weight_packed" : m + ".weight");
    ReadSite rs;
    rs.stored_dtype = dtype_name(w.dtype);
    const bool is_float = w.dtype == DType::BF16 || w.dtype == DType::F16 || w.dtype == DType::F32;
    const Group* g = group_of(m);
    if (!g) {
      if (!is_float) bad("quantized weight (" + rs.stored_dtype + ") but quantization_config ignores or does not target the module");
      return rs;
    }
    if (is_float) {  // experts: verify.cpp reports them
      if (s.role != Role::Expert && s.role != Role::Embedding)
        bad("stored as " + rs.stored_dtype + " but targeted by quantization_config " + g->name +
            " and not in ignore: compressed-tensors would look for its quantized tensors");
      return rs;
    }
    rs.format = g->f.format;
    rs.input_unsupported = g->dynamic_input;
    QuantizedTensor q;
    q.format = rs.format;
    q.params = g->f.params;
    bool ok = true;
    auto fail = [&](const std::string& msg) { bad(msg); ok = false; };
    // A parameter of this module: present, of one of `dtypes`, of `shape` (when given).
    auto need = [&](const std::string& p, std::vector<DType> dtypes, std::vector<int64_t> shape) -> bool {
      if (!ck.has(m + "." + p)) return fail("missing " + p + " (" + g->name + ", " + g->f.format + ")"), false;
      used.insert(m + "." + p);
      const TensorInfo& t = ck.info(m + "." + p);
      bool dtype_ok = false;
      std::string names;
      for (DType d : dtypes) dtype_ok = dtype_ok || t.dtype == d, names += std::string(names.empty() ? "" : "/") + dtype_name(d);
      if (!dtype_ok || (!shape.empty() && t.shape != shape))
        return fail(p + " should be " + names + (shape.empty() ? "" : " " + shape_str(shape)) + ", is " + dtype_name(t.dtype) + " " + shape_str(t.shape)), false;
      return true;
    };
    auto view = [&](const std::string& p) { return tensor_view(ck, m + "." + p); };
    auto positive = [&](const std::string& p) {
      if (!all_positive_finite(view(p))) fail(p + " holds zero, negative or non-finite scales");
    };
    const std::vector<DType> floats = {DType::BF16, DType::F16, DType::F32};
    const int64_t out = w.shape.size() == 2 ? w.shape[0] : -1;
    if (w.shape.size() != 2) return fail("weight should be 2D, is " + shape_str(w.shape)), rs;

    const CtFamily family = ct_family(rs.format);
    if (family == CtFamily::PackedInt) {
      const int64_t bits = format_by_name(rs.format).traits().bits, group = q.params.block_size;
      int64_t in = -1;
      if (need("weight_shape", {DType::I64}, {2})) {
        const at::Tensor shp = view("weight_shape");
        in = shp[1].item<int64_t>();
        if (shp[0].item<int64_t>() != out || in <= 0 || in % group != 0 || w.shape[1] * 32 / bits != in)
          fail("weight_shape " + shape_str({shp[0].item<int64_t>(), in}) + " does not fit weight_packed " + shape_str(w.shape) +
               " and group size " + std::to_string(group));
      }
      if (w.dtype != DType::I32) fail("weight_packed should be I32, is " + rs.stored_dtype);
      if (!ok) return rs;
      if (need("weight_scale", floats, {out, in / group})) positive("weight_scale");
      if (!q.params.symmetric) need("weight_zero_point", {DType::I32}, {(out * bits + 31) / 32, in / group});
      // Activation order (llm-compressor actorder "group"): column j belongs to group g_idx[j].
      at::Tensor g_idx;
      if (ck.has(m + ".weight_g_idx") && need("weight_g_idx", {DType::I32, DType::I64}, {in})) {
        g_idx = view("weight_g_idx").to(at::kLong);
        if ((g_idx < 0).any().item<bool>() || (g_idx >= in / group).any().item<bool>())
          fail("weight_g_idx holds groups outside 0.." + std::to_string(in / group - 1));
      }
      if (!ok) return rs;
      q.shape = {out, in};
      for (const char* p : {"weight_scale", "weight_shape"}) q.parts[p] = view(p);
      if (!q.params.symmetric) q.parts["weight_zero_point"] = view("weight_zero_point");
      // With g_idx: one scale (and zero point) per column, each its group's; the format decodes
      // that as group size 1 (zero points are packed along rows, so columns select whole words).
      if (g_idx.defined())
        for (const char* p : {"weight_scale", "weight_zero_point"})
          if (q.parts.count(p)) q.parts[p] = q.parts[p].index_select(1, g_idx);
    } else if (family == CtFamily::Nvfp4Pack || family == CtFamily::Mxfp4Pack) {
      const int64_t in = w.shape[1] * 2, block = format_by_name(rs.format).traits().block;
      if (w.dtype != DType::U8) fail("weight_packed should be U8 [out, in/2], is " + rs.stored_dtype);
      if (family == CtFamily::Nvfp4Pack) {
        if (need("weight_scale", {DType::F8_E4M3}, {out, in / block})) positive("weight_scale");
        if (need("weight_global_scale", {DType::F32}, {1})) {
          rs.tensor_scale_name = "weight_global_scale";
          rs.tensor_scale = stored_scalar(ck, m + ".weight_global_scale");
          if (!std::isfinite(rs.tensor_scale) || rs.tensor_scale <= 0)
            fail("weight_global_scale is " + std::to_string(rs.tensor_scale) + " (must be finite and > 0)");
        }
        if (g->f.input_quant && need("input_global_scale", {DType::F32}, {1})) {
          rs.input_scale = stored_scalar(ck, m + ".input_global_scale");
          if (!std::isfinite(rs.input_scale) || rs.input_scale <= 0)
            fail("input_global_scale is " + std::to_string(rs.input_scale) + " (must be finite and > 0)");
          rs.input_quantized = true;
          rs.act_scale = 1.0f / rs.input_scale;
        }
        if (ok) q.parts["weight_scale_2"] = at::full({}, 1.0f / rs.tensor_scale, at::kFloat);
      } else if (need("weight_scale", {DType::U8}, {out, in / block}) && (view("weight_scale") == 255).any().item<bool>()) {
        fail("weight_scale holds the E8M0 NaN code 255");
      }
      if (!ok) return rs;
      q.shape = {out, in};
      q.parts["weight_scale"] = view("weight_scale");
    } else {  // fp8
      const bool channel = q.params.granularity == "channel";
      if (w.dtype != DType::F8_E4M3) fail("weight should be F8_E4M3, is " + rs.stored_dtype);
      // No gate/up agreement asked: llm-compressor keeps each fp8 scale and vLLM requantizes
      // a fused pair to the larger one (only NVFP4 global scales must match).
      if (need("weight_scale", floats, channel ? std::vector<int64_t>{out, 1} : std::vector<int64_t>{1})) positive("weight_scale");
      if (g->f.input_quant && need("input_scale", floats, {1})) {
        rs.input_scale = stored_scalar(ck, m + ".input_scale");
        if (!std::isfinite(rs.input_scale) || rs.input_scale <= 0)
          fail("input_scale is " + std::to_string(rs.input_scale) + " (must be finite and > 0)");
        rs.input_quantized = true;
        rs.act_scale = rs.input_scale;
      }
      if (!ok) return rs;
      q.shape = w.shape;
      const at::Tensor sc = view("weight_scale").to(at::kFloat);
      q.parts["weight_scale"] = channel ? sc : sc.reshape({});
    }
    q.parts[rs.format.rfind("int", 0) == 0 ? "weight_packed" : "weight"] = tensor_view(ck, w.name);  // moeq's part names
    rs.q = std::move(q);
    return rs;
  }

 private:
  // What compressed-tensors decides for a module: ignore first, then the first group
  // targeting it (its dequantizer goes through the groups in order).
  const Group* group_of(const std::string& module) const {
    for (const auto& i : ignore_)
      if (i.matches(module)) return nullptr;
    for (const auto& g : groups_) {
      if (g.all_linear) return &g;
      for (const auto& t : g.targets)
        if (t.matches(module)) return &g;
    }
    return nullptr;
  }

  // `<module>.weight_packed` shown to the plugin as `<module>.weight` [out, in].
  TensorInfo logical_weight(const std::string& name) const {
    TensorInfo t = ck_->info(name);
    const std::string m = name.substr(0, name.size() - std::string(".weight_packed").size());
    t.name = m + ".weight";
    if (t.shape.size() == 2) {
      if (t.dtype == DType::U8) t.shape[1] *= 2;
      const std::string shp = m + ".weight_shape";
      if (t.dtype == DType::I32 && ck_->has(shp) && ck_->info(shp).dtype == DType::I64 && ck_->info(shp).numel() == 2)
        t.shape = {tensor_view(*ck_, shp)[0].item<int64_t>(), tensor_view(*ck_, shp)[1].item<int64_t>()};
    }
    return t;
  }

  std::shared_ptr<Checkpoint> ck_;
  std::vector<Group> groups_;
  std::vector<Pattern> ignore_;
  std::set<std::string> params_;
  std::vector<TensorInfo> weights_;
};

}  // namespace

std::unique_ptr<ExportReader> open_compressed_tensors_reader(const std::string& dir, const nlohmann::json& qc,
                                                             std::shared_ptr<Checkpoint> ck) {
  return std::make_unique<CtReader>(dir, qc, std::move(ck));
}

}  // namespace moeq
