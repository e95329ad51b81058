#include "app/compare/act_fake_quant.h"

#include "core/error.h"

namespace moeq {
namespace {

constexpr double kE4M3Max = 448.0;

// input_scale shaped to broadcast against x viewed as [rows, ...rest]: [] stays [], [rows]
// gets `trailing` singleton dimensions.
at::Tensor row_scale(const at::Tensor& x_rows, const at::Tensor& input_scale, int64_t trailing, const char* what) {
  if (input_scale.scalar_type() != at::kFloat)
    throw Error(std::string(what) + ": the input scale must be float32");
  if (input_scale.dim() == 0) return input_scale;
  if (input_scale.dim() != 1 || input_scale.size(0) != x_rows.size(0))
    throw Error(std::string(what) + ": the input scale must be a scalar or one per row (" + std::to_string(x_rows.size(0)) +
                " rows), got " + std::to_string(input_scale.numel()) + " values");
  std::vector<int64_t> shape{input_scale.size(0)};
  for (int64_t i = 0; i < trailing; ++i) shape.push_back(1);
  return input_scale.view(shape);
}

at::Tensor as_rows(const at::Tensor& x, const at::Tensor& input_scale) {
  if (x.dim() == 0) throw Error("activation fake quantization: x must have at least one dimension");
  const int64_t in = x.size(-1);
  return input_scale.dim() == 0 ? x.reshape({-1, in}) : x;
}

}  // namespace

at::Tensor e2m1_round(const at::Tensor& v) {
  // E2M1 magnitudes 0, .5, 1, 1.5 | 2, 3 | 4, 6: steps of 0.5 below 2, 1 below 4, 2 above.
  // at::round is round-half-to-even; the scalings by 2 and 0.5 are exact.
  const at::Tensor a = v.abs();
  const at::Tensor q = at::where(a < 2, at::round(a * 2) * 0.5, at::where(a < 4, at::round(a), at::round(a * 0.5) * 2))
                           .clamp_max(6.0);
  return at::where(v < 0, -q, q);
}

at::Tensor fp8_input_fake_quant(const at::Tensor& x, const at::Tensor& input_scale) {
  const at::Tensor xr = as_rows(x, input_scale);
  if (xr.dim() != 2) throw Error("fp8 input fake quantization: x must be [rows, in] with one scale per row");
  const at::Tensor s = row_scale(xr, input_scale, 1, "fp8 input fake quantization");
  const at::Tensor v = (xr.to(at::kFloat) * at::reciprocal(s)).clamp(-kE4M3Max, kE4M3Max);
  const at::Tensor q = v.to(at::kFloat8_e4m3fn).to(at::kFloat);
  return (q * s).to(x.scalar_type()).view(x.sizes());
}

at::Tensor nvfp4_input_fake_quant(const at::Tensor& x, const at::Tensor& input_scale) {
  const at::Tensor xr = as_rows(x, input_scale);
  if (xr.dim() != 2) throw Error("nvfp4 input fake quantization: x must be [rows, in] with one scale per row");
  const int64_t rows = xr.size(0), in = xr.size(1);
  if (in % 16 != 0)
    throw Error("nvfp4 input fake quantization: the input has " + std::to_string(in) +
                " features, not a multiple of the 16-element NVFP4 block");
  const at::Tensor s = row_scale(xr, input_scale, 2, "nvfp4 input fake quantization");  // [] or [rows, 1, 1]
  const at::Tensor xb = xr.to(at::kFloat).reshape({rows, in / 16, 16});
  const at::Tensor gs = at::reciprocal(s);
  const at::Tensor bmax = xb.abs().amax(-1, /*keepdim=*/true);  // [rows, blocks, 1]
  const at::Tensor sf = (gs * (bmax * (1.0f / 6.0f))).clamp_max(kE4M3Max).to(at::kFloat8_e4m3fn).to(at::kFloat);
  const at::Tensor out = at::where(sf != 0, at::reciprocal(sf * at::reciprocal(gs)), at::zeros_like(sf));
  const at::Tensor q = e2m1_round(xb * out);
  return (q * sf * s).to(x.scalar_type()).view(x.sizes());
}

}  // namespace moeq
