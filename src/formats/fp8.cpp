// FP8 E4M3 (see fp8.h for the math and the parts).
#include "formats/fp8.h"

#include <c10/util/Float8_e4m3fn.h>

#include <algorithm>
#include <cmath>

#include "formats/cuda_stream.h"
#include "formats/format.h"
#include "formats/format_util.h"

namespace moeq {
namespace {

constexpr float kFp8Max = 448.f;

void quantize_cpu(const WeightBatch& w, bool per_channel, const float* scales, uint8_t* q) {
  const int64_t n = w.rows * w.cols;
  dispatch_in_type(w.type, [&](auto in) {
    using L = decltype(in);
    const auto* p = static_cast<const typename L::T*>(w.data);
#pragma omp parallel for collapse(2)
    for (int64_t e = 0; e < w.experts; ++e)
      for (int64_t r = 0; r < w.rows; ++r) {
        const float s = per_channel ? scales[e * w.rows + r] : scales[e];
        const int64_t base = e * n + r * w.cols;
        for (int64_t c = 0; c < w.cols; ++c) {
          const float x = std::clamp(L::load(p, base + c) / s, -kFp8Max, kFp8Max);
          q[base + c] = c10::detail::fp8e4m3fn_from_fp32_value(x);
        }
      }
  });
}

class Fp8Format : public QuantFormat {
 public:
  std::string name() const override { return "fp8"; }

  void validate(const std::vector<int64_t>& shape, const FormatParams& p) const override {
    if (shape.size() != 2 && shape.size() != 3) throw Error("fp8: weight must be 2D or 3D");
    if (p.granularity != "tensor" && p.granularity != "channel")
      throw Error("fp8: granularity must be 'tensor' or 'channel', got '" + p.granularity + "'");
  }

  QuantizedTensor quantize(const at::Tensor& w, const FormatParams& p, const std::optional<at::Tensor>& amax) const override {
    validate(w.sizes().vec(), p);
    check_weight(w, "fp8", 0);
    const bool per_channel = p.granularity == "channel";
    if (per_channel && amax) throw Error("fp8: a given amax only applies to per-tensor scales");
    const bool was_2d = w.dim() == 2;
    at::Tensor w3 = to_3d(w);
    const WeightBatch b = as_batch(w3);
    const auto f32 = at::TensorOptions().dtype(at::kFloat).device(w.device());
    at::Tensor amax_t;
    if (amax) {
      amax_t = amax->to(f32).reshape({b.experts}).contiguous();
      if (!at::isfinite(amax_t).all().item<bool>() || (amax_t < 0).any().item<bool>())
        throw Error("fp8: given amax must be finite and non-negative");
    } else if (w.is_cuda()) {
      amax_t = at::zeros({per_channel ? b.experts * b.rows : b.experts}, f32);
      at::Tensor bad = at::zeros({1}, f32.dtype(at::kInt));
      absmax_cuda(b, per_channel, amax_t.data_ptr<float>(), bad.data_ptr<int>(), current_cuda_stream());
      if (bad.item<int>()) throw_non_finite("fp8");
    } else if (per_channel) {
      amax_t = at::empty({b.experts * b.rows}, f32);
      WeightBatch rows = b;  // each row is its own "expert" for the amax
      rows.experts = b.experts * b.rows;
      rows.rows = 1;
      amax_per_expert_cpu(rows, amax_t.data_ptr<float>(), "fp8");
    } else {
      amax_t = at::empty({b.experts}, f32);
      amax_per_expert_cpu(b, amax_t.data_ptr<float>(), "fp8");
    }
    // An all-zero tensor or row gets scale 1 so that dequantization stays exact (0 * 1).
    at::Tensor scale = at::where(amax_t > 0, amax_t / kFp8Max, at::ones_like(amax_t)).contiguous();
    at::Tensor q = at::empty(w3.sizes(), w3.options().dtype(at::kFloat8_e4m3fn));
    if (w.is_cuda())
      fp8_quantize_cuda(b, per_channel, scale.data_ptr<float>(), static_cast<uint8_t*>(q.data_ptr()), current_cuda_stream());
    else
      quantize_cpu(b, per_channel, scale.data_ptr<float>(), static_cast<uint8_t*>(q.data_ptr()));
    QuantizedTensor out;
    out.format = name();
    out.shape = w.sizes().vec();
    out.orig_dtype = w.scalar_type();
    out.params = p;
    out.parts["weight"] = like_input(q, was_2d);
    if (per_channel) out.parts["weight_scale"] = like_input(scale.reshape({b.experts, b.rows, 1}), was_2d);
    else out.parts["weight_scale"] = was_2d ? scale.reshape({}) : scale;
    return out;
  }

  QuantizedTensor quantize_torch_ops(const at::Tensor& w, const FormatParams& p,
                                     const std::optional<at::Tensor>& amax) const override {
    validate(w.sizes().vec(), p);
    check_weight(w, "fp8", 0);
    const bool per_channel = p.granularity == "channel";
    const bool was_2d = w.dim() == 2;
    at::Tensor x = (was_2d ? w.unsqueeze(0) : w).to(at::kFloat);
    at::Tensor a = amax ? amax->to(x.options()).reshape({-1, 1, 1})
                        : (per_channel ? x.abs().amax({2}, true) : x.abs().amax({1, 2}, true));
    at::Tensor scale = at::where(a > 0, a / kFp8Max, at::ones_like(a));
    at::Tensor q = (x / scale).clamp(-kFp8Max, kFp8Max).to(at::kFloat8_e4m3fn);
    QuantizedTensor out;
    out.format = name();
    out.shape = w.sizes().vec();
    out.orig_dtype = w.scalar_type();
    out.params = p;
    out.parts["weight"] = like_input(q, was_2d);
    if (per_channel) out.parts["weight_scale"] = like_input(scale, was_2d);
    else out.parts["weight_scale"] = was_2d ? scale.reshape({}) : scale.reshape({-1});
    return out;
  }

  at::Tensor dequantize(const QuantizedTensor& q, at::ScalarType out) const override {
    const at::Tensor& w = q.parts.at("weight");
    at::Tensor s = q.parts.at("weight_scale");
    if (q.params.granularity != "channel" && w.dim() == 3) s = s.reshape({-1, 1, 1});
    return (w.to(at::kFloat) * s).to(out);
  }

  double bits_per_weight(const std::vector<int64_t>& shape, const FormatParams& p) const override {
    const double in = static_cast<double>(shape.back());
    return 8.0 + (p.granularity == "channel" ? 32.0 / in : 0.0);
  }
};

}  // namespace

MOEQ_FORMAT(Fp8Format);

}  // namespace moeq
