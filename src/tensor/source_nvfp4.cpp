#include "tensor/source_nvfp4.h"

#include <vector>

#include "core/error.h"
#include "formats/nvfp4/nvfp4.h"
#include "formats/nvfp4/nvfp4_amax.h"
#include "tensor/source_dequant.h"
#ifdef MOEQ_WITH_CUDA
#include "formats/cuda_stream.h"
#include "formats/source_nvfp4_kernels.h"
#endif

namespace moeq {
namespace {

const QuantFormat& nvfp4() { return format_by_name(kNvfp4Name); }

// [] for a 2D weight, [E] for a stack (as nvfp4's quantize returns its global scales).
at::Tensor per_expert(const at::Tensor& a, bool was_2d) { return was_2d ? a.reshape({}) : a.reshape({-1}); }

#ifdef MOEQ_WITH_CUDA
void throw_flags(int flags, const std::string& what) {
  if (flags & kSourceBadScale) throw Error(what + ": an E8M0 scale is 0xFF (NaN); the checkpoint is corrupt");
  if (flags & kSourceNonFinite) throw_non_finite(kNvfp4Name);
}

// scratch: E floats of abs-max (as zeroed ints) and the flags word.
template <class Stack>
at::Tensor device_amax(const Stack& st, bool was_2d, const at::TensorOptions& opt, const std::string& what) {
  const int64_t E = st.E;
  at::Tensor scratch = at::zeros({E + 1}, opt.dtype(at::kInt));
  source_absmax_cuda(st, reinterpret_cast<float*>(scratch.data_ptr<int>()), scratch.data_ptr<int>() + E,
                     current_cuda_stream());
  throw_flags(scratch[E].item<int>(), what);
  return per_expert(scratch.narrow(0, 0, E).view(at::kFloat), was_2d);
}

template <class Stack>
QuantizedTensor device_nvfp4(const Stack& st, const std::vector<int64_t>& shape, const FormatParams& p,
                             const std::optional<at::Tensor>& amax, const at::TensorOptions& opt, const std::string& what) {
  const bool was_2d = shape.size() == 2;
  const int64_t E = st.E, R = st.R, C = st.C;
  at::Tensor scratch = at::zeros({E + 1}, opt.dtype(at::kInt));
  int* bad = scratch.data_ptr<int>() + E;
  at::Tensor amax_t;
  const float* a = nullptr;
  if (amax) {
    amax_t = nvfp4_given_amax(*amax, E, was_2d, opt.device());
    a = amax_t.data_ptr<float>();
  } else {
    source_absmax_cuda(st, reinterpret_cast<float*>(scratch.data_ptr<int>()), bad, current_cuda_stream());
    a = reinterpret_cast<const float*>(scratch.data_ptr<int>());
  }
  at::Tensor q = at::empty({E, R, C / 2}, opt.dtype(at::kByte));
  at::Tensor scales = at::empty({E, R, C / kNvfp4Block}, opt.dtype(at::kByte));
  at::Tensor gs = at::empty({E}, opt.dtype(at::kFloat));
  source_nvfp4_cuda(st, a, q.data_ptr<uint8_t>(), scales.data_ptr<uint8_t>(), gs.data_ptr<float>(), bad,
                    current_cuda_stream());
  throw_flags(scratch[E].item<int>(), what);  // one sync
  // The parts as nvfp4's quantize returns them (formats/nvfp4/nvfp4.cpp).
  QuantizedTensor out;
  out.format = kNvfp4Name;
  out.shape = shape;
  out.orig_dtype = at::kBFloat16;  // the decoded weight's dtype
  out.params = p;
  out.params.block_size = kNvfp4Block;
  out.parts["weight"] = was_2d ? q.squeeze(0) : q;
  out.parts["weight_scale"] = (was_2d ? scales.squeeze(0) : scales).view(at::kFloat8_e4m3fn);
  out.parts["weight_scale_2"] = per_expert(gs, was_2d);
  return out;
}

Fp8BlockStack fp8_stack(const at::Tensor& q, const at::Tensor& s, const Fp8BlockShape& d, int64_t bm, int64_t bn) {
  return Fp8BlockStack{static_cast<const uint8_t*>(q.data_ptr()), s.data_ptr(), s.scalar_type() == at::kBFloat16,
                       d.E, d.R, d.C, bm, bn};
}

Mxfp4Stack mxfp4_stack(const at::Tensor& b, const at::Tensor& s, const std::vector<int64_t>& shape) {
  const int64_t C = shape.back(), R = shape[shape.size() - 2];
  return Mxfp4Stack{b.data_ptr<uint8_t>(), s.data_ptr<uint8_t>(), shape.size() == 3 ? shape[0] : 1, R, C};
}
#endif

void check_on_device(bool cuda, const std::string& what) {
#ifndef MOEQ_WITH_CUDA
  if (cuda) throw Error(what + ": moeq was built without CUDA; decode on the CPU");
#else
  (void)cuda;
  (void)what;
#endif
}

}  // namespace

QuantizedTensor fp8_block_to_nvfp4(const at::Tensor& w, const at::Tensor& scale_inv, int64_t bm, int64_t bn,
                                   const FormatParams& p, const std::optional<at::Tensor>& amax, const std::string& what) {
  const Fp8BlockShape d = check_fp8_block(w, scale_inv, bm, bn, what);
  const std::vector<int64_t> shape = w.sizes().vec();
  nvfp4().validate(shape, p);
  check_on_device(w.is_cuda(), what);
  if (!w.is_cuda() || bn % kNvfp4Block != 0) return nvfp4().quantize(fp8_block_dequant(w, scale_inv, bm, bn, what), p, amax);
#ifdef MOEQ_WITH_CUDA
  const at::Tensor q = w.contiguous(), s = scale_inv.contiguous();
  return device_nvfp4(fp8_stack(q, s, d, bm, bn), shape, p, amax, w.options(), what);
#else
  (void)d;
  throw Error(what + ": moeq was built without CUDA");
#endif
}

QuantizedTensor mxfp4_source_to_nvfp4(const at::Tensor& blocks, const at::Tensor& scales, const FormatParams& p,
                                      const std::optional<at::Tensor>& amax, const std::string& what) {
  const Mxfp4Shape d = check_mxfp4(blocks, scales, what);
  nvfp4().validate(d.decoded, p);
  check_on_device(blocks.is_cuda(), what);
  if (!blocks.is_cuda()) return nvfp4().quantize(mxfp4_dequant(blocks, scales, what), p, amax);
#ifdef MOEQ_WITH_CUDA
  const at::Tensor b = blocks.contiguous(), s = scales.contiguous();
  return device_nvfp4(mxfp4_stack(b, s, d.decoded), d.decoded, p, amax, blocks.options(), what);
#else
  throw Error(what + ": moeq was built without CUDA");
#endif
}

at::Tensor fp8_block_decoded_amax(const at::Tensor& w, const at::Tensor& scale_inv, int64_t bm, int64_t bn,
                                  const std::string& what) {
  const Fp8BlockShape d = check_fp8_block(w, scale_inv, bm, bn, what);
  if (w.dim() != 2 && w.dim() != 3) throw Error(what + ": expected a 2D weight or a 3D stack");
  check_on_device(w.is_cuda(), what);
  const bool was_2d = w.dim() == 2;
  if (!w.is_cuda() || bn % kNvfp4Block != 0 || d.C % kNvfp4Block != 0) {
    const at::Tensor x = fp8_block_dequant(w, scale_inv, bm, bn, what);
    return (was_2d ? x.abs().amax() : x.abs().amax({1, 2})).to(at::kFloat);
  }
#ifdef MOEQ_WITH_CUDA
  const at::Tensor q = w.contiguous(), s = scale_inv.contiguous();
  return device_amax(fp8_stack(q, s, d, bm, bn), was_2d, w.options(), what);
#else
  throw Error(what + ": moeq was built without CUDA");
#endif
}

at::Tensor mxfp4_decoded_amax(const at::Tensor& blocks, const at::Tensor& scales, const std::string& what) {
  const Mxfp4Shape d = check_mxfp4(blocks, scales, what);
  if (d.decoded.size() != 2 && d.decoded.size() != 3) throw Error(what + ": expected a 2D weight or a 3D stack");
  check_on_device(blocks.is_cuda(), what);
  const bool was_2d = d.decoded.size() == 2;
  if (!blocks.is_cuda() || d.decoded.back() % kNvfp4Block != 0) {
    const at::Tensor x = mxfp4_dequant(blocks, scales, what);
    return (was_2d ? x.abs().amax() : x.abs().amax({1, 2})).to(at::kFloat);
  }
#ifdef MOEQ_WITH_CUDA
  const at::Tensor b = blocks.contiguous(), s = scales.contiguous();
  return device_amax(mxfp4_stack(b, s, d.decoded), was_2d, blocks.options(), what);
#else
  throw Error(what + ": moeq was built without CUDA");
#endif
}

}  // namespace moeq
