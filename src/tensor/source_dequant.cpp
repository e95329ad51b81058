#include "tensor/source_dequant.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Float8_e4m3fn.h>

#include <algorithm>
#include <array>
#include <vector>
#include <atomic>
#include <cmath>

#include "core/error.h"
#ifdef MOEQ_WITH_CUDA
#include "formats/cuda_stream.h"
#include "formats/source_dequant_kernels.h"
#endif

namespace moeq {
namespace {

const std::array<float, 256>& fp8_table() {
  static const std::array<float, 256> t = [] {
    std::array<float, 256> a{};
    for (int i = 0; i < 256; ++i) a[i] = static_cast<float>(c10::Float8_e4m3fn(static_cast<uint8_t>(i), c10::Float8_e4m3fn::from_bits()));
    return a;
  }();
  return t;
}

constexpr float kE2m1[16] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f, -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

std::string shape_text(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

}  // namespace

Fp8BlockShape check_fp8_block(const at::Tensor& w, const at::Tensor& scale_inv, int64_t bm, int64_t bn,
                              const std::string& what) {
  if (w.scalar_type() != at::kFloat8_e4m3fn || w.dim() < 2)
    throw Error(what + ": fp8-block dequantize needs an F8_E4M3 matrix, got " + std::string(c10::toString(w.scalar_type())) +
                " " + shape_text(w));
  if (scale_inv.scalar_type() != at::kFloat && scale_inv.scalar_type() != at::kBFloat16)
    throw Error(what + ": weight_scale_inv must be F32 or BF16, got " + std::string(c10::toString(scale_inv.scalar_type())));
  if (scale_inv.device() != w.device())
    throw Error(what + ": weight_scale_inv is on " + scale_inv.device().str() + ", the weight on " + w.device().str());
  const int64_t R = w.size(-2), C = w.size(-1);
  const int64_t E = R * C == 0 ? 0 : w.numel() / (R * C);
  const int64_t SR = bm > 0 ? ceil_div(R, bm) : 0, SC = bn > 0 ? ceil_div(C, bn) : 0;
  if (bm <= 0 || bn <= 0 || scale_inv.dim() != w.dim() || scale_inv.size(-2) != SR || scale_inv.size(-1) != SC ||
      scale_inv.numel() != E * SR * SC)
    throw Error(what + ": weight_scale_inv " + shape_text(scale_inv) + " does not fit weight " + shape_text(w) + " in [" +
                std::to_string(bm) + ", " + std::to_string(bn) + "] blocks (expected [.., " + std::to_string(SR) + ", " +
                std::to_string(SC) + "])");
  return Fp8BlockShape{E, R, C};
}

at::Tensor fp8_block_dequant(const at::Tensor& w, const at::Tensor& scale_inv, int64_t bm, int64_t bn,
                             const std::string& what) {
  const Fp8BlockShape d = check_fp8_block(w, scale_inv, bm, bn, what);
  const int64_t E = d.E, R = d.R, C = d.C, SR = ceil_div(R, bm), SC = ceil_div(C, bn);
  const at::Tensor q = w.contiguous(), s = scale_inv.contiguous();
  at::Tensor out = at::empty(w.sizes(), w.options().dtype(at::kBFloat16));
  if (w.is_cuda()) {
#ifdef MOEQ_WITH_CUDA
    fp8_block_dequant_cuda(static_cast<const uint8_t*>(q.data_ptr()), s.data_ptr(), s.scalar_type() == at::kBFloat16, E,
                           R, C, bm, bn, static_cast<uint16_t*>(out.data_ptr()), current_cuda_stream());
    return out;
#else
    throw Error(what + ": moeq was built without CUDA; decode on the CPU");
#endif
  }
  const auto& lut = fp8_table();
  const uint8_t* qp = static_cast<const uint8_t*>(q.data_ptr());
  const bool sbf = s.scalar_type() == at::kBFloat16;
  const float* sf = sbf ? nullptr : s.data_ptr<float>();
  const c10::BFloat16* sb = sbf ? s.data_ptr<c10::BFloat16>() : nullptr;
  c10::BFloat16* op = out.data_ptr<c10::BFloat16>();
  at::parallel_for(0, E * R, 16, [&](int64_t a, int64_t z) {
    for (int64_t row = a; row < z; ++row) {
      const int64_t srow = (row / R) * SR + (row % R) / bm;
      const uint8_t* qr = qp + row * C;
      c10::BFloat16* orow = op + row * C;
      for (int64_t c0 = 0; c0 < C; c0 += bn) {
        const float sc = sbf ? static_cast<float>(sb[srow * SC + c0 / bn]) : sf[srow * SC + c0 / bn];
        const int64_t c1 = std::min(C, c0 + bn);
        for (int64_t c = c0; c < c1; ++c) orow[c] = c10::BFloat16(lut[qr[c]] * sc);
      }
    }
  });
  return out;
}

Mxfp4Shape check_mxfp4(const at::Tensor& blocks, const at::Tensor& scales, const std::string& what) {
  if (blocks.scalar_type() != at::kByte || scales.scalar_type() != at::kByte || blocks.dim() < 2 ||
      blocks.size(-1) != 16 || scales.sizes() != blocks.sizes().slice(0, blocks.dim() - 1))
    throw Error(what + ": MXFP4 blocks " + shape_text(blocks) + " and scales " + shape_text(scales) +
                " do not fit U8 [.., R, G, 16] with U8 [.., R, G]");
  if (scales.device() != blocks.device())
    throw Error(what + ": MXFP4 scales are on " + scales.device().str() + ", the blocks on " + blocks.device().str());
  Mxfp4Shape d;
  d.G = blocks.size(-2);
  d.R = d.G == 0 ? 0 : blocks.numel() / (d.G * 16);
  d.decoded.assign(blocks.sizes().begin(), blocks.sizes().end() - 2);
  d.decoded.push_back(d.G * 32);
  return d;
}

at::Tensor mxfp4_dequant(const at::Tensor& blocks, const at::Tensor& scales, const std::string& what) {
  const Mxfp4Shape d = check_mxfp4(blocks, scales, what);
  const int64_t G = d.G, R = d.R;
  const std::vector<int64_t>& shape = d.decoded;
  const at::Tensor b = blocks.contiguous(), s = scales.contiguous();
  at::Tensor out = at::empty(shape, blocks.options().dtype(at::kBFloat16));
  if (blocks.is_cuda()) {
#ifdef MOEQ_WITH_CUDA
    at::Tensor bad = at::zeros({1}, blocks.options().dtype(at::kInt));
    mxfp4_dequant_cuda(b.data_ptr<uint8_t>(), s.data_ptr<uint8_t>(), R, G, static_cast<uint16_t*>(out.data_ptr()),
                       bad.data_ptr<int>(), current_cuda_stream());
    if (bad.item<int>()) throw Error(what + ": an E8M0 scale is 0xFF (NaN); the checkpoint is corrupt");
    return out;
#else
    throw Error(what + ": moeq was built without CUDA; decode on the CPU");
#endif
  }
  const uint8_t* bp = b.data_ptr<uint8_t>();
  const uint8_t* sp = s.data_ptr<uint8_t>();
  c10::BFloat16* op = out.data_ptr<c10::BFloat16>();
  std::atomic<bool> bad{false};
  at::parallel_for(0, R * G, 256, [&](int64_t a, int64_t z) {
    for (int64_t g = a; g < z; ++g) {
      const uint8_t e = sp[g];
      if (e == 0xFF) bad = true;
      const int ex = static_cast<int>(e) - 127;
      for (int j = 0; j < 16; ++j) {
        const uint8_t byte = bp[g * 16 + j];
        op[g * 32 + 2 * j] = c10::BFloat16(std::ldexp(kE2m1[byte & 15], ex));
        op[g * 32 + 2 * j + 1] = c10::BFloat16(std::ldexp(kE2m1[byte >> 4], ex));
      }
    }
  });
  if (bad) throw Error(what + ": an E8M0 scale is 0xFF (NaN); the checkpoint is corrupt");
  return out;
}

}  // namespace moeq
