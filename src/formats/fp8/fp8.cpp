// FP8 E4M3 (see fp8.h for the math and the parts).
#include "formats/fp8/fp8.h"

#include <c10/util/Float8_e4m3fn.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "formats/cuda_stream.h"
#include "formats/format.h"
#include "formats/format_util.h"

namespace moeq {
namespace {

constexpr float kFp8Max = 448.f;

// ModelOpt's export (TensorQuantizer.export_amax, get_scaling_factor): a zero amax exports
// as 448 (scale 1, so dequantization of zeros stays exact), amax is clamped to
// [FLT_MIN, FLT_MAX] (a subnormal amax must not make the scale 0), scale = amax / 448.
// The divisor is a 0-d tensor on amax's device: CUDA would multiply a CPU scalar's
// reciprocal, which differs from the CPU division in the last bit.
at::Tensor scale_from_amax(const at::Tensor& amax) {
  const at::Tensor a = at::where(amax == 0, at::full_like(amax, kFp8Max), amax)
                           .clamp(std::numeric_limits<float>::min(), std::numeric_limits<float>::max());
  return a / at::full({}, kFp8Max, a.options());
}

// A given amax as `count` floats on `device`, checked: per tensor ([] or [E]) one per
// expert, per channel ([out] or [E, out]) one per row.
at::Tensor given_amax(const at::Tensor& amax, int64_t count, bool per_channel, const at::Device& device) {
  if (amax.numel() != count)
    throw Error("fp8: given amax has " + std::to_string(amax.numel()) + " values, expected one per " +
                (per_channel ? "row" : "expert") + " (" + std::to_string(count) + ")");
  at::Tensor a = amax.to(device, at::kFloat).reshape({count}).contiguous();
  if (!(at::isfinite(a) & (a >= 0)).all().item<bool>())  // one sync
    throw Error("fp8: given amax must be finite and non-negative");
  return a;
}

// Returns false when w holds NaN/Inf (it reads every element, so it checks).
bool quantize_cpu(const WeightBatch& w, bool per_channel, const float* scales, uint8_t* q) {
  const int64_t n = w.rows * w.cols;
  bool finite = true;
  dispatch_in_type(w.type, [&](auto in) {
    using L = decltype(in);
    const auto* p = static_cast<const typename L::T*>(w.data);
#pragma omp parallel for collapse(2) reduction(&& : finite)
    for (int64_t e = 0; e < w.experts; ++e)
      for (int64_t r = 0; r < w.rows; ++r) {
        const float s = per_channel ? scales[e * w.rows + r] : scales[e];
        const int64_t base = e * n + r * w.cols;
        for (int64_t c = 0; c < w.cols; ++c) {
          const float v = L::load(p, base + c);
          finite = finite && std::fabs(v) <= std::numeric_limits<float>::max();
          q[base + c] = c10::detail::fp8e4m3fn_from_fp32_value(std::clamp(v / s, -kFp8Max, kFp8Max));
        }
      }
  });
  return finite;
}

// Per-row amax of all E*rows rows, one parallel loop (the quantize pass checks finiteness).
void amax_rows_cpu(const WeightBatch& w, float* amax) {
  dispatch_in_type(w.type, [&](auto in) {
    using L = decltype(in);
    const auto* p = static_cast<const typename L::T*>(w.data);
#pragma omp parallel for
    for (int64_t r = 0; r < w.experts * w.rows; ++r) {
      float m = 0.f;
      for (int64_t c = 0; c < w.cols; ++c) m = std::max(m, std::fabs(L::load(p, r * w.cols + c)));
      amax[r] = m;
    }
  });
}

// The parts of either path: weight [.., out, in]; weight_scale [] / [E] per tensor or
// [.., out, 1] per channel (scale holds E or E*out values in any shape).
QuantizedTensor make_result(const at::Tensor& w, const FormatParams& p, const at::Tensor& q3, const at::Tensor& scale) {
  const bool was_2d = w.dim() == 2;
  QuantizedTensor out;
  out.format = "fp8";
  out.shape = w.sizes().vec();
  out.orig_dtype = w.scalar_type();
  out.params = p;
  out.parts["weight"] = like_input(q3, was_2d);
  if (p.granularity == "channel") out.parts["weight_scale"] = like_input(scale.reshape({q3.size(0), q3.size(1), 1}), was_2d);
  else out.parts["weight_scale"] = was_2d ? scale.reshape({}) : scale.reshape({-1});
  return out;
}

class Fp8Format : public QuantFormat {
 public:
  std::string name() const override { return "fp8"; }

  FormatTraits traits() const override {
    FormatTraits t;
    t.kind = ElementKind::Float;
    t.bits = 8;
    t.exponent_bits = 4;  // E4M3
    t.mantissa_bits = 3;
    t.granularity_param = true;
    t.input_quant = InputQuant::StaticTensor;
    t.input_amax_divisor = 448.0f;  // E4M3 max (ModelOpt)
    t.activation_label = "W8A8";
    t.mse = MseSearch::TensorOrChannel;
    t.sqnr_floor_db = 20.0;
    return t;
  }

  // The per-tensor granularity's weight_scale is the tensor scale; per channel it is one per row.
  bool has_tensor_scale(const FormatParams& p) const override { return p.granularity == "tensor"; }

  // weight F8_E4M3 as the input; weight_scale F32 [] / [E] per tensor, [.., out, 1] per channel
  std::optional<std::map<std::string, PartSpec>> part_specs(const std::vector<int64_t>& shape,
                                                            const FormatParams& p) const override {
    validate(shape, p);
    std::vector<int64_t> scale;
    if (p.granularity == "channel") {
      scale = shape;
      scale.back() = 1;
    } else if (shape.size() == 3) {
      scale = {shape[0]};
    }
    return std::map<std::string, PartSpec>{{"weight", {at::kFloat8_e4m3fn, shape}}, {"weight_scale", {at::kFloat, scale}}};
  }

  void validate(const std::vector<int64_t>& shape, const FormatParams& p) const override {
    if (shape.size() != 2 && shape.size() != 3) throw Error("fp8: weight must be 2D or 3D");
    if (p.granularity != "tensor" && p.granularity != "channel")
      throw Error("fp8: granularity must be 'tensor' or 'channel', got '" + p.granularity + "'");
  }

  QuantizedTensor quantize(const at::Tensor& w, const FormatParams& p, const std::optional<at::Tensor>& amax) const override {
    validate(w.sizes().vec(), p);
    check_weight(w, "fp8", 0);
    const bool per_channel = p.granularity == "channel";
    at::Tensor w3 = to_3d(w);
    const WeightBatch b = as_batch(w3);
    const auto f32 = at::TensorOptions().dtype(at::kFloat).device(w.device());
    at::Tensor amax_t;
    if (amax) amax_t = given_amax(*amax, per_channel ? b.experts * b.rows : b.experts, per_channel, w.device());
#ifdef MOEQ_WITH_CUDA
    if (w.is_cuda() && !per_channel && fp8_tensor_kernel_applies(b)) {  // amax + quantize: one launch, one sync
      at::Tensor scratch = at::zeros({2 * b.experts + 1}, f32.dtype(at::kInt));
      at::Tensor scale = at::empty({b.experts}, f32);
      at::Tensor q = at::empty(w3.sizes(), w3.options().dtype(at::kFloat8_e4m3fn));
      fp8_quantize_tensor_cuda(b, amax ? amax_t.data_ptr<float>() : nullptr, scratch.data_ptr<int>(),
                               scale.data_ptr<float>(), static_cast<uint8_t*>(q.data_ptr()), current_cuda_stream());
      if (scratch[2 * b.experts].item<int>()) throw_non_finite("fp8");
      return make_result(w, p, q, scale);
    }
#endif
    at::Tensor bad;  // CUDA: one flag for the amax and quantize kernels, read once
    if (amax) {
    } else if (w.is_cuda()) {
      amax_t = at::zeros({per_channel ? b.experts * b.rows : b.experts}, f32);
      bad = at::zeros({1}, f32.dtype(at::kInt));
#ifdef MOEQ_WITH_CUDA
      absmax_cuda(b, per_channel, amax_t.data_ptr<float>(), bad.data_ptr<int>(), current_cuda_stream());
#endif
    } else if (per_channel) {
      amax_t = at::empty({b.experts * b.rows}, f32);
      amax_rows_cpu(b, amax_t.data_ptr<float>());
    } else {
      amax_t = at::empty({b.experts}, f32);
      amax_per_expert_cpu(b, amax_t.data_ptr<float>(), "fp8");
    }
    at::Tensor scale = scale_from_amax(amax_t).contiguous();
    at::Tensor q = at::empty(w3.sizes(), w3.options().dtype(at::kFloat8_e4m3fn));
    uint8_t* qp = static_cast<uint8_t*>(q.data_ptr());
    if (w.is_cuda()) {
#ifdef MOEQ_WITH_CUDA
      if (!bad.defined()) bad = at::zeros({1}, f32.dtype(at::kInt));
      fp8_quantize_cuda(b, per_channel, scale.data_ptr<float>(), qp, bad.data_ptr<int>(), current_cuda_stream());
      if (bad.item<int>()) throw_non_finite("fp8");
#else
      throw Error("fp8: moeq was built without CUDA; move the weight to the CPU");
#endif
    } else if (!quantize_cpu(b, per_channel, scale.data_ptr<float>(), qp)) {
      throw_non_finite("fp8");
    }
    return make_result(w, p, q, scale);
  }

  QuantizedTensor quantize_torch_ops(const at::Tensor& w, const FormatParams& p,
                                     const std::optional<at::Tensor>& amax) const override {
    validate(w.sizes().vec(), p);
    check_weight(w, "fp8", 0);
    const bool per_channel = p.granularity == "channel";
    require_finite(w, "fp8");
    const bool was_2d = w.dim() == 2;
    at::Tensor x = (was_2d ? w.unsqueeze(0) : w).to(at::kFloat);
    const int64_t count = per_channel ? x.size(0) * x.size(1) : x.size(0);
    at::Tensor a = amax ? given_amax(*amax, count, per_channel, x.device()).reshape({x.size(0), per_channel ? x.size(1) : 1, 1})
                        : (per_channel ? x.abs().amax({2}, true) : x.abs().amax({1, 2}, true));
    at::Tensor scale = scale_from_amax(a);
    at::Tensor q = (x / scale).clamp(-kFp8Max, kFp8Max).to(at::kFloat8_e4m3fn);
    return make_result(w, p, q, scale);
  }

  at::Tensor dequantize(const QuantizedTensor& q, at::ScalarType out) const override {
    const at::Tensor& w = q.parts.at("weight");
    at::Tensor s = q.parts.at("weight_scale");
    if (q.params.granularity != "channel" && w.dim() == 3) s = s.reshape({-1, 1, 1});
    return (w.to(at::kFloat) * s).to(out);
  }

  double bits_per_weight(const std::vector<int64_t>& shape, const FormatParams& p) const override {
    // One fp32 scale per row (channel) or per matrix (tensor).
    const double in = static_cast<double>(shape.back()), rows = static_cast<double>(shape[shape.size() - 2]);
    return 8.0 + (p.granularity == "channel" ? 32.0 / in : 32.0 / (rows * in));
  }
};

}  // namespace

MOEQ_REGISTER(FormatPtr, "fp8", std::make_unique<Fp8Format>())

}  // namespace moeq
