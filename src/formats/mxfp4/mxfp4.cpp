// MXFP4 (see mxfp4.h for the math, the parts and the choices the spec leaves open).
#include "formats/mxfp4/mxfp4.h"

#include <cmath>
#include <limits>
#include <string>

#include "formats/cuda_stream.h"
#include "formats/e2m1_host.h"
#include "formats/format.h"
#include "formats/format_util.h"

namespace moeq {
namespace {

// One pass over the blocks (OpenMP); false when an element is NaN or Inf.
template <InType T>
bool quantize_cpu(const WeightBatch& w, uint8_t* q, uint8_t* scales) {
  const int64_t blocks = w.numel() / kMxfp4Block;
  bool finite = true;
#pragma omp parallel for reduction(&& : finite) schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    float x[kMxfp4Block];
    float probe = 0.f;  // x - x is NaN exactly for NaN/Inf
    for (int i = 0; i < kMxfp4Block; ++i) {
      x[i] = load_as<T>(w.data, b * kMxfp4Block + i);
      probe += x[i] - x[i];
    }
    finite = finite && probe == 0.f;
    mxfp4_block(x, scales + b, q + b * (kMxfp4Block / 2));
  }
  return finite;
}

QuantizedTensor make_result(const at::Tensor& w, const FormatParams& p, const at::Tensor& q, const at::Tensor& scales) {
  const bool was_2d = w.dim() == 2;
  QuantizedTensor out;
  out.format = "mxfp4";
  out.shape = w.sizes().vec();
  out.orig_dtype = w.scalar_type();
  out.params = p;
  out.params.block_size = kMxfp4Block;
  out.parts["weight"] = like_input(q, was_2d);
  out.parts["weight_scale"] = like_input(scales, was_2d);
  return out;
}

void reject_amax(const std::optional<at::Tensor>& amax) {
  if (amax) throw Error("mxfp4: has no per-tensor scale, so a given amax does not apply; pass none");
}

class Mxfp4Format : public QuantFormat {
 public:
  std::string name() const override { return "mxfp4"; }

  FormatTraits traits() const override {
    FormatTraits t;
    t.kind = ElementKind::Float;
    t.bits = 4;
    t.exponent_bits = 2;  // E2M1
    t.mantissa_bits = 1;
    t.block = kMxfp4Block;
    t.block_fixed = true;
    t.block_scale = BlockScale::E8M0;
    t.sqnr_floor_db = 10.0;
    return t;
  }

  void validate(const std::vector<int64_t>& shape, const FormatParams& p) const override {
    if (shape.size() != 2 && shape.size() != 3)
      throw Error("mxfp4: expected a 2D [out, in] weight or a 3D [E, out, in] stack, got " +
                  std::to_string(shape.size()) + "D");
    if (p.block_size != 0 && p.block_size != kMxfp4Block)
      throw Error("mxfp4: block size is fixed at 32 by the OCP MX spec, got " + std::to_string(p.block_size));
    if (shape.back() % kMxfp4Block != 0)
      throw Error("mxfp4: input dimension " + std::to_string(shape.back()) +
                  " is not divisible by the block size 32; keep this weight in another format");
  }

  QuantizedTensor quantize(const at::Tensor& w, const FormatParams& p, const std::optional<at::Tensor>& amax) const override {
    validate(w.sizes().vec(), p);
    check_weight(w, "mxfp4", kMxfp4Block);
    reject_amax(amax);
    const at::Tensor w3 = to_3d(w);
    const WeightBatch b = as_batch(w3);
    const auto u8 = at::TensorOptions().dtype(at::kByte).device(w.device());
    at::Tensor q = at::empty({b.experts, b.rows, b.cols / 2}, u8);
    at::Tensor scales = at::empty({b.experts, b.rows, b.cols / kMxfp4Block}, u8);
    if (w.is_cuda()) {
      at::Tensor bad = at::zeros({1}, u8.dtype(at::kInt));
      mxfp4_quantize_cuda(b, q.data_ptr<uint8_t>(), scales.data_ptr<uint8_t>(), bad.data_ptr<int>(),
                          current_cuda_stream());
      if (bad.item<int>()) throw_non_finite("mxfp4");
    } else {
      const bool finite = with_in_type(b.type, [&](auto t) {
        return quantize_cpu<decltype(t)::value>(b, q.data_ptr<uint8_t>(), scales.data_ptr<uint8_t>());
      });
      if (!finite) throw_non_finite("mxfp4");
    }
    return make_result(w, p, q, scales);
  }

  QuantizedTensor quantize_torch_ops(const at::Tensor& w, const FormatParams& p,
                                     const std::optional<at::Tensor>& amax) const override {
    validate(w.sizes().vec(), p);
    check_weight(w, "mxfp4", kMxfp4Block);
    reject_amax(amax);
    require_finite(w, "mxfp4");
    const at::Tensor x = to_3d(w).to(at::kFloat);
    const int64_t E = x.size(0), R = x.size(1), C = x.size(2);
    const at::Tensor xb = x.view({E, R, C / kMxfp4Block, kMxfp4Block});
    const at::Tensor bmax = xb.abs().amax({-1});
    // frexp: bmax = m * 2^k with m in [0.5, 1), so floor(log2(bmax)) = k - 1, exactly.
    const at::Tensor k = std::get<1>(at::frexp(bmax));
    const at::Tensor shared = at::where(bmax == 0, -127, (k - 3).clamp_min(-127)).to(at::kInt);
    // 2^-shared from its bits (exact; no exp2/pow rounding).
    const at::Tensor inv = at::bitwise_left_shift(127 - shared, 23).view(at::kFloat);
    const at::Tensor v = xb * inv.unsqueeze(-1);
    const at::Tensor q = e2m1_pack_torch(e2m1_codes_torch(v, at::signbit(v)).view({E, R, C}));
    return make_result(w, p, q, (shared + 127).to(at::kByte));
  }

  at::Tensor dequantize(const QuantizedTensor& q, at::ScalarType out) const override {
    const at::Tensor packed = q.parts.at("weight");
    const bool was_2d = packed.dim() == 2;
    const at::Tensor p3 = was_2d ? packed.unsqueeze(0) : packed;
    const at::Tensor s3 = (was_2d ? q.parts.at("weight_scale").unsqueeze(0) : q.parts.at("weight_scale")).to(at::kInt);
    const int64_t E = p3.size(0), R = p3.size(1), C = p3.size(2) * 2;
    // 2^(s - 127) from its bits: s = 0 is the subnormal 2^-127, s = 255 is NaN (E8M0).
    at::Tensor scale = at::bitwise_left_shift(s3, 23).view(at::kFloat);
    scale = at::where(s3 == 0, std::ldexp(1.f, -127), scale);
    scale = at::where(s3 == 255, std::numeric_limits<float>::quiet_NaN(), scale);
    const at::Tensor vals = e2m1_values_torch(e2m1_unpack_torch(p3), true).view({E, R, C / kMxfp4Block, kMxfp4Block});
    return like_input((vals * scale.unsqueeze(-1)).view({E, R, C}), was_2d).to(out);
  }

  double bits_per_weight(const std::vector<int64_t>& shape, const FormatParams& p) const override {
    validate(shape, p);
    return 4.0 + 8.0 / kMxfp4Block;  // codes and one E8M0 byte per 32
  }
};

}  // namespace

MOEQ_REGISTER(FormatPtr, "mxfp4", std::make_unique<Mxfp4Format>())

}  // namespace moeq
