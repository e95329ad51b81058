#pragma once
#include <cstdint>
// Quantization formats as a library layer: each format quantizes a 2D weight [out, in]
// or a stack of experts [E, out, in] in one call, dequantizes, and names its output
// tensors ("parts") so the export writers can lay them out for each consumer.
//
// A format is one folder, src/formats/<name>/: its CPU code and registration (<name>.cpp,
// MOEQ_REGISTER(FormatPtr, "<name>", ...)), its CUDA kernels (<name>.cu) and its traits
// (QuantFormat::traits(), formats/format_traits.h), which answer what the rest of moeq asks.
#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/registry.h"
#include "formats/format_traits.h"

namespace moeq {

// Parameters a recipe can set; each format reads the ones it uses and validate() rejects
// values it cannot honour.
struct FormatParams {
  int64_t block_size = 0;          // 0: the format's default (NVFP4 16, NF4 64, MXFP4 32, INT 128)
  bool double_quant = false;       // NF4/FP4: 8-bit quantized absmax (bitsandbytes compress_statistics)
  bool symmetric = true;           // INT4/INT8: symmetric, or asymmetric with zero points
  std::string granularity = "tensor";  // FP8: "tensor" or "channel"
};

// The result of quantizing one weight or one expert stack. For a stack every part has a
// leading expert dimension E (also the per-tensor scalars, which become [E]).
struct QuantizedTensor {
  std::string format;
  std::vector<int64_t> shape;               // the original [out, in] or [E, out, in]
  at::ScalarType orig_dtype = at::kBFloat16;
  FormatParams params;
  std::map<std::string, at::Tensor> parts;  // e.g. weight, weight_scale, weight_scale_2
};

// The dtype and shape of one part quantize() returns, known before quantizing.
struct PartSpec {
  at::ScalarType dtype;
  std::vector<int64_t> shape;
};

class QuantFormat {
 public:
  virtual ~QuantFormat() = default;
  virtual std::string name() const = 0;
  // The format's facts (formats/format_traits.h); the contract test holds quantize() to them.
  virtual FormatTraits traits() const = 0;
  // Whether quantize() gives a per-tensor scale ([] or [E]) that amax replaces and that
  // members of a fusion group can share: traits().global_scale unless params decide.
  virtual bool has_tensor_scale(const FormatParams&) const { return traits().global_scale; }
  // The parts quantize() returns for this shape and params, by name, when the format declares
  // them before quantizing (an export then lays out its files first; the others keep the
  // buffered path); nullopt otherwise. Formats that declare them throw where validate() does.
  virtual std::optional<std::map<std::string, PartSpec>> part_specs(const std::vector<int64_t>& shape,
                                                                    const FormatParams& p) const;
  // Throws moeq::Error saying why the shape or params do not fit (e.g. in % block != 0).
  virtual void validate(const std::vector<int64_t>& shape, const FormatParams& p) const = 0;
  // w: [out, in] or [E, out, in], bf16/f16/f32, on CPU or CUDA (the kernel follows the
  // device). amax: optional per-tensor amax ([] or [E]) replacing the weights' own, where
  // the format has a per-tensor scale (NVFP4 global scale, FP8 tensor scale); for FP8 with
  // channel granularity, one amax per row ([out] or [E, out]).
  virtual QuantizedTensor quantize(const at::Tensor& w, const FormatParams& p,
                                   const std::optional<at::Tensor>& amax = std::nullopt) const = 0;
  // The same math written with ATen tensor ops only (no custom kernel): the baseline the
  // benchmarks compare against, and a second implementation the tests hold the kernels to.
  // Must produce the same parts, byte for byte.
  virtual QuantizedTensor quantize_torch_ops(const at::Tensor& w, const FormatParams& p,
                                             const std::optional<at::Tensor>& amax = std::nullopt) const = 0;
  // Block scales chosen outside the format (the MSE search, src/quant/mse_search.h): NVFP4
  // takes its FP8 E4M3 block scale bytes (uint8 [.., out, in/16], each a positive finite
  // e4m3 value) and the per-tensor amax ([] or [E]) of its global scale, and quantizes every
  // block with the given scale. INT4/INT8 (symmetric) take their group scales (weight_scale's
  // dtype and shape) and an undefined amax (GPTQ's fixed grid). Other formats throw.
  virtual QuantizedTensor quantize_with_block_scales(const at::Tensor& w, const FormatParams& p, const at::Tensor& amax,
                                                     const at::Tensor& block_scales) const;
  // Back to floating point, shape q.shape, on the device of q's parts.
  virtual at::Tensor dequantize(const QuantizedTensor& q, at::ScalarType out = at::kFloat) const = 0;
  // Storage cost including scales, in bits per weight element, for this shape.
  virtual double bits_per_weight(const std::vector<int64_t>& shape, const FormatParams& p) const = 0;
};

// The format registry: Registry<FormatPtr> (core/registry.h). A format's .cpp registers it:
//   MOEQ_REGISTER(FormatPtr, "nvfp4", std::make_unique<Nvfp4Format>());
using FormatPtr = std::unique_ptr<QuantFormat>;
// Throws moeq::Error listing the known formats when the name is unknown.
const QuantFormat& format_by_name(const std::string& name);
// The registered format named `name`, or nullptr (names a plan or recipe did not check).
const QuantFormat* find_format(const std::string& name);
// The first registered format (in registration order) whose traits satisfy pred, or nullptr:
// how a consumer's vocabulary (a ModelOpt or compressed-tensors scheme) maps back to a format.
template <class Pred>
const QuantFormat* find_format_where(Pred pred) {
  const FormatPtr* f = Registry<FormatPtr>::instance().find_if([&](const FormatPtr& p) { return pred(p->traits()); });
  return f ? f->get() : nullptr;
}
std::vector<std::string> format_names();

// Shared checks: 2D or 3D, bf16/f16/f32, last dim divisible by `block`. Throws moeq::Error.
void check_weight(const at::Tensor& w, const std::string& format, int64_t block);
// Throws moeq::Error when w holds NaN or Inf. Costs a pass over w: kernels that already
// read every element should detect non-finite values themselves and throw the same error.
void require_finite(const at::Tensor& w, const std::string& format);
[[noreturn]] void throw_non_finite(const std::string& format);

}  // namespace moeq
