// `moeq verify` for bitsandbytes 4-bit exports (quant_method "bitsandbytes", load_in_4bit;
// export/bnb/bnb_scheme.h): per quantized linear the packed uint8 weight and its QuantState
// tensors; the JSON quant_state gives quant type, block size, dtype, shape and the nested
// offset. Exclusions are llm_int8_skip_modules, matched as transformers matches them.
#include <cmath>
#include <map>

#include "core/error.h"
#include "export/bnb/bnb_layout.h"
#include "export/bnb/bnb_scheme.h"
#include "export/reader.h"
#include "formats/format.h"
#include "tensor/aten_view.h"

namespace moeq {
namespace {

using namespace bnb_scheme;

const char* kSuffixes[] = {kAbsmax, kQuantMap, kNestedAbsmax, kNestedQuantMap};

// The parsed `quant_state.bitsandbytes__<qt>` JSON of one weight.
struct QuantStateJson {
  std::string quant_type, dtype;
  int64_t blocksize = 0, nested_blocksize = 0;
  std::vector<int64_t> shape;
  std::optional<float> nested_offset;
};

at::ScalarType torch_dtype(const std::string& d) {
  if (d == "bfloat16") return at::kBFloat16;
  if (d == "float16") return at::kHalf;
  if (d == "float32") return at::kFloat;
  throw Error("dtype '" + d + "' is not bfloat16, float16 or float32");
}

class BnbReader : public ExportReader {
 public:
  BnbReader(const std::string& dir, const nlohmann::json& qc, std::shared_ptr<Checkpoint> ck) : ck_(std::move(ck)) {
    if (!qc.value("load_in_4bit", false))
      throw Error(dir + ": bitsandbytes quantization_config without load_in_4bit: moeq verify reads 4-bit (nf4/fp4) exports only");
    auto skip = qc.find("llm_int8_skip_modules");
    if (skip != qc.end() && !skip->is_null())
      for (const auto& m : *skip) skip_.push_back(m.get<std::string>());
    else
      skip_ = {"lm_head"};  // transformers' default skips: the output embedding
    for (const auto& e : skip_) bnb_scheme::skip_entry_matches(e, "");  // rejects entries it cannot read, up front
    for (const auto& n : ck_->names()) {
      const size_t at = n.find(".weight.");
      if (at != std::string::npos && is_param(n.substr(at + 8))) {
        params_.insert(n);
        if (n.compare(at + 8, std::string(kQuantStatePrefix).size(), kQuantStatePrefix) == 0)
          state_of_[n.substr(0, at + 7)] = n;
      }
    }
    for (const auto& n : ck_->names())
      if (!params_.count(n)) weights_.push_back(logical_weight(n));
  }

  const std::vector<TensorInfo>& weights() const override { return weights_; }
  const std::set<std::string>& params() const override { return params_; }
  bool excluded(const std::string& m) const override {
    for (const auto& e : skip_)
      if (skip_entry_matches(e, m)) return true;
    return false;
  }

  ReadSite read(const Site& s, const Complain& bad, std::set<std::string>& used) const override {
    const Checkpoint& ck = *ck_;
    const std::string w = s.view.tensor;
    const TensorInfo& wi = ck.info(w);
    ReadSite rs;
    rs.stored_dtype = dtype_name(wi.dtype);
    auto st = state_of_.find(w);
    if (st == state_of_.end()) {
      if (wi.dtype == DType::U8) bad("packed 4-bit weight (U8) without its " + std::string(kQuantStatePrefix) + "nf4|fp4 tensor");
      else if (excluded(s.module) == false && s.role != Role::Expert && s.role != Role::Embedding && s.role != Role::Norm)
        bad("stored as " + rs.stored_dtype + " but not in llm_int8_skip_modules: transformers would look for its quant state");
      return rs;
    }
    used.insert(st->second);
    bool ok = true;
    auto fail = [&](const std::string& msg) { bad(msg); ok = false; };
    QuantStateJson j;
    try {
      j = parse_state(st->second);
    } catch (const std::exception& e) {
      fail(st->second.substr(w.size() + 1) + ": " + e.what());
      return rs;
    }
    rs.format = j.quant_type;
    if (excluded(s.module)) fail("quantized, but llm_int8_skip_modules skips it: transformers would load it as a float weight");
    const int64_t n = j.shape.size() == 2 ? j.shape[0] * j.shape[1] : -1;
    const int64_t block = j.blocksize, blocks = block > 0 && n > 0 ? (n + block - 1) / block : -1;
    const bool dq = j.nested_offset.has_value();
    QuantizedTensor q;
    q.format = j.quant_type;
    q.shape = j.shape;
    q.params.block_size = block;
    q.params.double_quant = dq;
    try {
      q.orig_dtype = torch_dtype(j.dtype);
      format_by_name(q.format).validate(q.shape, q.params);
    } catch (const Error& e) {
      fail("quant_state " + std::string(e.what()));
    }
    if (dq && j.nested_blocksize != 256) fail("quant_state nested_blocksize " + std::to_string(j.nested_blocksize) + " (moeq reads 256, bitsandbytes' only one)");
    if (dq && !std::isfinite(*j.nested_offset)) fail("quant_state nested_offset is not finite");
    if (!ok) return rs;
    if (wi.dtype != DType::U8 || wi.shape != std::vector<int64_t>{(n + 1) / 2, 1})
      fail("weight should be U8 " + shape_str({(n + 1) / 2, 1}) + " for shape " + shape_str(j.shape) + ", is " + rs.stored_dtype + " " +
           shape_str(wi.shape));
    // One QuantState tensor: present, of `dtype` and `shape`.
    auto need = [&](const char* p, DType dtype, std::vector<int64_t> shape) {
      const std::string name = w + "." + p;
      if (!ck.has(name)) return fail("missing " + std::string(p) + " (" + j.quant_type + (dq ? ", double quant" : "") + ")"), false;
      used.insert(name);
      const TensorInfo& t = ck.info(name);
      if (t.dtype != dtype || t.shape != shape)
        return fail(std::string(p) + " should be " + dtype_name(dtype) + " " + shape_str(shape) + ", is " + dtype_name(t.dtype) + " " +
                    shape_str(t.shape)), false;
      return true;
    };
    auto finite = [&](const char* p, bool non_negative) {
      const at::Tensor t = tensor_view(ck, w + "." + p).to(at::kFloat);
      if (!at::isfinite(t).all().item<bool>() || (non_negative && (t < 0).any().item<bool>()))
        fail(std::string(p) + " holds " + (non_negative ? "negative or " : "") + "non-finite values");
    };
    if (need(kAbsmax, dq ? DType::U8 : DType::F32, {blocks}) && !dq) finite(kAbsmax, true);
    if (need(kQuantMap, DType::F32, {16})) finite(kQuantMap, false);
    if (dq) {
      if (need(kNestedAbsmax, DType::F32, {(blocks + 255) / 256})) finite(kNestedAbsmax, true);
      if (need(kNestedQuantMap, DType::F32, {256})) finite(kNestedQuantMap, false);
    } else {
      for (const char* p : {kNestedAbsmax, kNestedQuantMap})
        if (ck.has(w + "." + p)) fail(std::string(p) + " present but the quant_state has no nested_offset (double quant off)");
    }
    if (!ok) return rs;
    q.parts["weight"] = tensor_view(ck, w);
    q.parts["absmax"] = tensor_view(ck, w + "." + kAbsmax);
    q.parts["quant_map"] = tensor_view(ck, w + "." + kQuantMap);
    if (dq) {
      q.parts["nested_absmax"] = tensor_view(ck, w + "." + kNestedAbsmax);
      q.parts["nested_quant_map"] = tensor_view(ck, w + "." + kNestedQuantMap);
      q.parts["nested_offset"] = at::full({}, *j.nested_offset, at::kFloat);
    }
    rs.q = std::move(q);
    return rs;
  }

 private:
  static bool is_param(const std::string& suffix) {
    for (const char* p : kSuffixes)
      if (suffix == p) return true;
    for (const auto& f : format_names())  // the bitsandbytes formats: codebooks (nf4, fp4)
      if (format_by_name(f).traits().kind == ElementKind::Codebook && suffix == quant_state_suffix(f)) return true;
    return false;
  }

  QuantStateJson parse_state(const std::string& name) const {
    const at::Tensor t = tensor_view(*ck_, name);
    if (t.scalar_type() != at::kByte || t.dim() != 1) throw Error("should be a U8 [len] tensor of JSON text");
    const std::string text(reinterpret_cast<const char*>(t.data_ptr<uint8_t>()), static_cast<size_t>(t.numel()));
    const auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw Error("is not JSON: '" + text.substr(0, 80) + "'");
    QuantStateJson q;
    try {
      q.quant_type = j.at("quant_type").get<std::string>();
      q.blocksize = j.at("blocksize").get<int64_t>();
      q.dtype = j.at("dtype").get<std::string>();
      q.shape = j.at("shape").get<std::vector<int64_t>>();
      if (j.contains("nested_offset")) {
        q.nested_offset = j.at("nested_offset").get<float>();
        q.nested_blocksize = j.at("nested_blocksize").get<int64_t>();
        if (j.value("nested_dtype", "") != "float32") throw Error("nested_dtype should be float32");
      }
    } catch (const nlohmann::json::exception& e) {
      throw Error(std::string("missing or mistyped key: ") + e.what());
    }
    if (name.substr(name.size() - q.quant_type.size() - 2) != "__" + q.quant_type)
      throw Error("quant_type '" + q.quant_type + "' does not match the tensor's name");
    if (q.shape.size() != 2) throw Error("shape " + shape_str(q.shape) + " is not [out, in]");
    return q;
  }

  // A packed `<module>.weight` shown to the plugin with its logical [out, in] shape.
  TensorInfo logical_weight(const std::string& name) const {
    TensorInfo t = ck_->info(name);
    auto st = state_of_.find(name);
    if (st == state_of_.end()) return t;
    try {
      t.shape = parse_state(st->second).shape;
    } catch (const std::exception&) {
      // read() reports the broken quant state for this site.
    }
    return t;
  }

  std::shared_ptr<Checkpoint> ck_;
  std::vector<std::string> skip_;
  std::set<std::string> params_;
  std::map<std::string, std::string> state_of_;  // `<module>.weight` -> its quant_state tensor
  std::vector<TensorInfo> weights_;
};

}  // namespace

std::unique_ptr<ExportReader> open_bnb_reader(const std::string& dir, const nlohmann::json& qc, std::shared_ptr<Checkpoint> ck) {
  return std::make_unique<BnbReader>(dir, qc, std::move(ck));
}

}  // namespace moeq
