#pragma once
#include <cstdint>
// Export writers: how quantized sites are named and laid out for one consumer
// (ModelOpt HF for vLLM/TensorRT-LLM, compressed-tensors, bitsandbytes). One per export
// layout (export/<layout>/), registered with its reader in export/layout.h; the quantize
// pipeline is the same for all.
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "export/shard_writer.h"
#include "formats/format.h"
#include "model/config.h"
#include "recipe/recipe.h"

namespace moeq {

// One quantized linear as the pipeline hands it to a writer.
struct QuantizedSite {
  const Site* site = nullptr;
  const QuantizedTensor* q = nullptr;
  int64_t index = -1;                 // position in a stacked q (its expert), -1 for 2D
  std::optional<float> input_scale;   // from calibration, when the recipe quantizes activations
  std::optional<float> input_amax;    // the calibration amax input_scale comes from (set with it)
};

class ExportWriter {
 public:
  virtual ~ExportWriter() = default;
  virtual std::string name() const = 0;
  // Refuses formats this consumer cannot load (throws moeq::Error naming site and format).
  virtual void check(const SitePlan& p) const = 0;
  // True when write() only selects and reshapes the parts and makes tensors from the input
  // scales (no values read), so a dry run on meta parts gives its tensors' names, dtypes and
  // shapes before quantizing, and the export streams (quant/export_layout.h).
  virtual bool lays_out_before_quantizing() const { return false; }
  // Writes the tensors of one quantized site; returns their total bytes.
  virtual uint64_t write(const QuantizedSite& s, TensorSink& out) const = 0;
  // config.json changes and side files (hf_quant_config.json, ...).
  virtual void finish(const std::string& dir, nlohmann::json& config, const Plan& plan, const Recipe& recipe) const = 0;
};

// The part of a possibly stacked quantized tensor for one expert.
at::Tensor part_of(const QuantizedSite& s, const std::string& part);

}  // namespace moeq
