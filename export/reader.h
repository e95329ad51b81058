#pragma once
// How `moeq verify` reads one export layout (ModelOpt, compressed-tensors, bitsandbytes): which stored
// tensors are the linear weights, which are quantization parameters, and how one site's
// tensors become a moeq QuantizedTensor. verify.cpp does the rest: every expert present,
// decoding, comparison with the source, gate/up scale agreement, orphan parameters. Each
// layout's reader is in export/<layout>/, opened through the layout registry (export/layout.h).
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "formats/format.h"
#include "io/checkpoint.h"
#include "model/site.h"

namespace moeq {

struct ReadSite {
  std::string format;                // moeq format; "" when the weight is stored unquantized
  std::string stored_dtype;          // dtype of the stored weight (messages)
  std::optional<QuantizedTensor> q;  // set when every part is present and well-formed
  // The per-tensor scale and input scale a consumer shares between gate and up (vLLM fuses
  // them): name as stored, and values (0 when absent). Empty name: the format has none.
  std::string tensor_scale_name;
  float tensor_scale = 0, input_scale = 0;
  // The export quantizes this linear's input (W4A4 / W8A8): act_scale is its static input scale
  // as app/compare/act_fake_quant.h takes it (x' = q * sf * act_scale for NVFP4, q * act_scale
  // for FP8): ModelOpt's input_scale, compressed-tensors' input_scale (FP8) or
  // 1 / input_global_scale (NVFP4). `moeq compare --exports` fake-quantizes inputs with it.
  bool input_quantized = false;
  float act_scale = 0;
  // Non-empty when the export quantizes the input in a way moeq does not reproduce (dynamic
  // per-token FP8, say): what it is, for compare --exports' error. verify ignores it.
  std::string input_unsupported;
};

using Complain = std::function<void(const std::string&)>;

class ExportReader {
 public:
  virtual ~ExportReader() = default;
  // Linear weights for the plugin to map (packed ones under `<module>.weight` with their
  // logical shape); stable for the layout's lifetime.
  virtual const std::vector<TensorInfo>& weights() const = 0;
  // Stored tensors that are quantization parameters: each must belong to a read site.
  virtual const std::set<std::string>& params() const = 0;
  // Reads one site. Problems go to `bad` (the caller prefixes the site); parameters read
  // are added to `used`.
  virtual ReadSite read(const Site& s, const Complain& bad, std::set<std::string>& used) const = 0;
  // The config keeps this module unquantized on purpose (exclude_modules / ignore).
  virtual bool excluded(const std::string& module) const = 0;
};

// Shared helpers.
inline bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
std::string shape_str(const std::vector<int64_t>& s);
float stored_scalar(const Checkpoint& ck, const std::string& name);  // first element, as float
// All elements finite and > 0.
bool all_positive_finite(const at::Tensor& t);

}  // namespace moeq
