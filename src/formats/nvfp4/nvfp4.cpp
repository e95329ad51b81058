// NVFP4 (see nvfp4.h for the math, the parts and the one deviation from ModelOpt).
#include "formats/nvfp4/nvfp4.h"
#include "formats/nvfp4/nvfp4_amax.h"

#include <cmath>
#include <string>

#include "formats/cuda_stream.h"
#include "formats/e2m1_host.h"
#include "formats/format.h"
#include "formats/format_util.h"
#include "formats/fp8/fp8.h"

namespace moeq {
namespace {

// One pass over the blocks (OpenMP); false when an element is NaN or Inf.
template <InType T>
bool quantize_cpu(const WeightBatch& w, const float* global_scale, uint8_t* q, uint8_t* scales) {
  const int64_t blocks = w.numel() / kNvfp4Block, per_expert = w.rows * w.cols / kNvfp4Block;
  bool finite = true;
#pragma omp parallel for reduction(&& : finite) schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    float x[kNvfp4Block];
    float probe = 0.f;  // x - x is NaN exactly for NaN/Inf
    for (int i = 0; i < kNvfp4Block; ++i) {
      x[i] = load_as<T>(w.data, b * kNvfp4Block + i);
      probe += x[i] - x[i];
    }
    finite = finite && probe == 0.f;
    nvfp4_block(x, global_scale[b / per_expert], scales + b, q + b * (kNvfp4Block / 2));
  }
  return finite;
}


// Given FP8 block scale bytes as float8_e4m3fn [E, R, C/16] on `device`, checked: every
// byte a positive finite e4m3 value (1..126), so no block divides by 0 or NaN.
at::Tensor given_block_scales(const at::Tensor& s, const std::vector<int64_t>& shape3, bool was_2d, const at::Device& device) {
  std::vector<int64_t> want = shape3;
  if (was_2d) want.erase(want.begin());
  if (s.sizes().vec() != want || (s.scalar_type() != at::kByte && s.scalar_type() != at::kFloat8_e4m3fn))
    throw Error("nvfp4: given block scales must be uint8 or float8_e4m3fn of shape [.., out, in/16]");
  const at::Tensor b = s.to(device).contiguous().view(at::kByte).reshape(shape3);
  if (!((b >= 1) & (b <= 126)).all().item<bool>())  // one sync
    throw Error("nvfp4: given block scales must be positive finite FP8 E4M3 values (bytes 1..126)");
  return b.view(at::kFloat8_e4m3fn);
}

QuantizedTensor make_result(const at::Tensor& w, const FormatParams& p, const at::Tensor& q, const at::Tensor& scales,
                            const at::Tensor& global_scale) {
  const bool was_2d = w.dim() == 2;
  QuantizedTensor out;
  out.format = "nvfp4";
  out.shape = w.sizes().vec();
  out.orig_dtype = w.scalar_type();
  out.params = p;
  out.params.block_size = kNvfp4Block;
  out.parts["weight"] = like_input(q, was_2d);
  out.parts["weight_scale"] = like_input(scales, was_2d);
  out.parts["weight_scale_2"] = was_2d ? global_scale.reshape({}) : global_scale.reshape({-1});
  return out;
}

class Nvfp4Format : public QuantFormat {
 public:
  std::string name() const override { return "nvfp4"; }

  FormatTraits traits() const override {
    FormatTraits t;
    t.kind = ElementKind::Float;
    t.bits = 4;
    t.exponent_bits = 2;  // E2M1
    t.mantissa_bits = 1;
    t.block = kNvfp4Block;
    t.block_fixed = true;
    t.block_scale = BlockScale::E4M3;
    t.global_scale = true;  // weight_scale_2
    t.input_quant = InputQuant::DynamicBlocks;
    t.input_amax_divisor = 6.0f * 448.0f;  // E2M1 max x E4M3 max (ModelOpt)
    t.activation_label = "W4A4";
    t.gptq = true;
    t.mse = MseSearch::BlockScales;
    t.keeps_mxfp4_codes = true;
    t.sqnr_floor_db = 10.0;
    return t;
  }

  // weight U8 [.., out, in/2]; weight_scale F8_E4M3 [.., out, in/16]; weight_scale_2 F32 [] / [E]
  std::optional<std::map<std::string, PartSpec>> part_specs(const std::vector<int64_t>& shape,
                                                            const FormatParams& p) const override {
    validate(shape, p);
    std::vector<int64_t> packed = shape, scales = shape;
    packed.back() /= 2;
    scales.back() /= kNvfp4Block;
    const std::vector<int64_t> global = shape.size() == 3 ? std::vector<int64_t>{shape[0]} : std::vector<int64_t>{};
    return std::map<std::string, PartSpec>{{"weight", {at::kByte, packed}},
                                           {"weight_scale", {at::kFloat8_e4m3fn, scales}},
                                           {"weight_scale_2", {at::kFloat, global}}};
  }

  void validate(const std::vector<int64_t>& shape, const FormatParams& p) const override {
    if (shape.size() != 2 && shape.size() != 3)
      throw Error("nvfp4: expected a 2D [out, in] weight or a 3D [E, out, in] stack, got " +
                  std::to_string(shape.size()) + "D");
    if (p.block_size != 0 && p.block_size != kNvfp4Block)
      throw Error("nvfp4: block size is fixed at 16 (the FP8 scale covers 16 elements), got " +
                  std::to_string(p.block_size));
    if (shape.back() % kNvfp4Block != 0)
      throw Error("nvfp4: input dimension " + std::to_string(shape.back()) +
                  " is not divisible by the block size 16; keep this weight in another format");
  }

  QuantizedTensor quantize(const at::Tensor& w, const FormatParams& p, const std::optional<at::Tensor>& amax) const override {
    validate(w.sizes().vec(), p);
    check_weight(w, "nvfp4", kNvfp4Block);
    const at::Tensor w3 = to_3d(w);
    const WeightBatch b = as_batch(w3);
    const auto f32 = at::TensorOptions().dtype(at::kFloat).device(w.device());
    const auto u8 = f32.dtype(at::kByte);
    at::Tensor amax_t;
    if (amax) amax_t = nvfp4_given_amax(*amax, b.experts, w.dim() == 2, w.device());
    at::Tensor q = at::empty({b.experts, b.rows, b.cols / 2}, u8);
    at::Tensor scales = at::empty({b.experts, b.rows, b.cols / kNvfp4Block}, u8);
    at::Tensor gs = at::empty({b.experts}, f32);
    if (w.is_cuda()) {
      // One zeroed scratch buffer (amax, arrival counters, NaN flag), one launch, one sync.
      at::Tensor scratch = at::zeros({2 * b.experts + 1}, f32.dtype(at::kInt));
      nvfp4_quantize_cuda(b, amax ? amax_t.data_ptr<float>() : nullptr, scratch.data_ptr<int>(), q.data_ptr<uint8_t>(),
                          scales.data_ptr<uint8_t>(), gs.data_ptr<float>(), current_cuda_stream());
      if (scratch[2 * b.experts].item<int>()) throw_non_finite("nvfp4");
    } else {
      if (!amax) {
        amax_t = at::empty({b.experts}, f32);
        amax_per_expert_cpu(b, amax_t.data_ptr<float>(), "nvfp4");
      }
      const float* a = amax_t.data_ptr<float>();
      float* g = gs.data_ptr<float>();
      for (int64_t e = 0; e < b.experts; ++e) g[e] = nvfp4_global_scale(a[e]);
      const bool finite = with_in_type(b.type, [&](auto t) {
        return quantize_cpu<decltype(t)::value>(b, g, q.data_ptr<uint8_t>(), scales.data_ptr<uint8_t>());
      });
      if (!finite) throw_non_finite("nvfp4");
    }
    return make_result(w, p, q, scales.view(at::kFloat8_e4m3fn), gs);
  }

  QuantizedTensor quantize_torch_ops(const at::Tensor& w, const FormatParams& p,
                                     const std::optional<at::Tensor>& amax) const override {
    return torch_ops(w, p, amax, std::nullopt);
  }

  QuantizedTensor quantize_with_block_scales(const at::Tensor& w, const FormatParams& p, const at::Tensor& amax,
                                             const at::Tensor& block_scales) const override {
    return torch_ops(w, p, amax, block_scales);
  }

  // The ATen-ops math; block_scales: given FP8 block scale bytes instead of the blocks' own.
  QuantizedTensor torch_ops(const at::Tensor& w, const FormatParams& p, const std::optional<at::Tensor>& amax,
                            const std::optional<at::Tensor>& block_scales) const {
    validate(w.sizes().vec(), p);
    check_weight(w, "nvfp4", kNvfp4Block);
    require_finite(w, "nvfp4");
    const at::Tensor x = to_3d(w).to(at::kFloat);
    const int64_t E = x.size(0), R = x.size(1), C = x.size(2);
    const at::Tensor a = amax ? nvfp4_given_amax(*amax, E, w.dim() == 2, w.device()) : x.abs().amax({1, 2});
    // Divide by a device tensor: ATen turns division by a CPU scalar into a multiplication
    // by its reciprocal on CUDA, which ModelOpt's CPU math (and the kernels) don't do.
    at::Tensor gs = a / at::full({}, 2688.f, x.options());
    gs = at::where(gs == 0, 1.f, gs);
    const at::Tensor g3 = gs.view({E, 1, 1});
    const at::Tensor xb = x.view({E, R, C / kNvfp4Block, kNvfp4Block});
    at::Tensor s;
    if (block_scales) {
      s = given_block_scales(*block_scales, {E, R, C / kNvfp4Block}, w.dim() == 2, w.device());
    } else {
      s = xb.abs().amax({-1}) / (g3 * 6.f);
      s = at::where(s == 0, 1.f, s).clamp(0.001953125, 448.0).to(at::kFloat8_e4m3fn);
    }
    const at::Tensor v = xb / (s.to(at::kFloat) * g3).unsqueeze(-1);
    const at::Tensor q = e2m1_pack_torch(e2m1_codes_torch(v, v < 0).view({E, R, C}));
    return make_result(w, p, q, s, gs);
  }

  at::Tensor dequantize(const QuantizedTensor& q, at::ScalarType out) const override {
    const at::Tensor packed = q.parts.at("weight");
    const bool was_2d = packed.dim() == 2;
    const at::Tensor p3 = was_2d ? packed.unsqueeze(0) : packed;
    const at::Tensor s3 = was_2d ? q.parts.at("weight_scale").unsqueeze(0) : q.parts.at("weight_scale");
    const int64_t E = p3.size(0), R = p3.size(1), C = p3.size(2) * 2;
    // ModelOpt's order: (fp8 scale * weight_scale_2), then times the E2M1 value.
    const at::Tensor scale = s3.to(at::kFloat) * q.parts.at("weight_scale_2").to(at::kFloat).reshape({E, 1, 1});
    const at::Tensor vals = e2m1_values_torch(e2m1_unpack_torch(p3), false).view({E, R, C / kNvfp4Block, kNvfp4Block});
    return like_input((vals * scale.unsqueeze(-1)).view({E, R, C}), was_2d).to(out);
  }

  double bits_per_weight(const std::vector<int64_t>& shape, const FormatParams& p) const override {
    validate(shape, p);
    const double per_matrix = static_cast<double>(shape[shape.size() - 2]) * static_cast<double>(shape.back());
    return 4.0 + 8.0 / kNvfp4Block + 32.0 / per_matrix;  // codes, fp8 block scales, fp32 global scale
  }
};

}  // namespace

at::Tensor nvfp4_given_amax(const at::Tensor& amax, int64_t experts, bool was_2d, const at::Device& device) {
  const bool shape_ok = was_2d ? amax.numel() == 1 : (amax.dim() == 1 && amax.size(0) == experts);
  if (!shape_ok)
    throw Error("nvfp4: given amax must have shape " + std::string(was_2d ? "[]" : "[" + std::to_string(experts) + "]") +
                " for this weight, got " + std::to_string(amax.dim()) + "D with " + std::to_string(amax.numel()) +
                " elements");
  at::Tensor a = amax.to(device, at::kFloat).reshape({experts}).contiguous();
  if (!(at::isfinite(a) & (a >= 0)).all().item<bool>())  // one sync
    throw Error("nvfp4: given amax must be finite and non-negative");
  return a;
}


MOEQ_REGISTER(FormatPtr, "nvfp4", std::make_unique<Nvfp4Format>())

}  // namespace moeq
