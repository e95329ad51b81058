// The CUDA kernels' division-free E2M1 arithmetic (formats/e2m1_fast.h, run here on the host)
// against the reference arithmetic the CPU kernels use: every bf16 value on divisors of every
// exponent, the floats next to every decision boundary, and MXFP4 blocks; plus, on CUDA,
// stacks built from every bf16 value and from boundary-adjacent values (device == CPU bytes).
#include <ATen/ATen.h>

#include <catch2/catch_test_macros.hpp>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "e2m1_test_util.h"
#include "formats/e2m1_fast.h"
#include "formats/format.h"
#include "formats/mxfp4/mxfp4.h"
#include "formats/nvfp4/nvfp4.h"

using namespace moeq;

namespace {

float bf16(uint32_t bits) { return bits_float(bits << 16); }

// The reference: e2m1_code of the correctly rounded quotient, as nvfp4_block computes it.
uint8_t code_by_division(float x, float d) {
  const float v = x / d;
  return e2m1_code(v, v < 0.f);
}

// Divisors: every exponent (subnormals included), several mantissas each.
std::vector<float> divisors() {
  std::vector<float> d;
  std::mt19937 rng(7);
  for (int e = 0; e < 255; ++e)
    for (uint32_t m : {0u, 0x7FFFFFu, static_cast<uint32_t>(rng()) & 0x7FFFFFu})
      if (e > 0 || m > 0) d.push_back(bits_float(static_cast<uint32_t>(e) << 23 | m));
  return d;
}

}  // namespace

TEST_CASE("e2m1 bounds give the division's code for every bf16 value", "[e2m1_fast]") {
  int64_t checked = 0, bad = 0;
  for (const float d : divisors()) {
    E2m1Bounds b;
    REQUIRE(e2m1_bounds(d, &b));
    for (uint32_t bits = 0; bits < 65536; ++bits) {
      const float x = bf16(bits);  // NaN and Inf included: the same codes (7, 7 / 15)
      bad += e2m1_code_bounded(x, b) != code_by_division(x, d);
      ++checked;
    }
  }
  CHECK(checked > 40000000);
  CHECK(bad == 0);
  E2m1Bounds b;
  CHECK_FALSE(e2m1_bounds(0.f, &b));
  CHECK_FALSE(e2m1_bounds(INFINITY, &b));
  CHECK_FALSE(e2m1_bounds(NAN, &b));
}

TEST_CASE("e2m1 bounds give the division's code next to every boundary", "[e2m1_fast]") {
  // For random divisors (and each exponent's), the floats within 3 ulps of each bound and of
  // the exact boundaries t * d: where an inexact bound or a wrong tie would show.
  std::mt19937 rng(11);
  std::vector<float> ds = divisors();
  for (int i = 0; i < 5000; ++i) ds.push_back(bits_float((rng() % 254 + 1) << 23 | (rng() & 0x7FFFFFu)));
  int64_t checked = 0, bad = 0;
  for (const float d : ds) {
    E2m1Bounds b;
    REQUIRE(e2m1_bounds(d, &b));
    std::vector<float> centres(b.le, b.le + 7);
    centres.push_back(-b.neg);
    for (float t : {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.f}) centres.push_back(t * d);
    for (const float c : centres)
      for (int k = -3; k <= 3; ++k) {
        const uint32_t cb = float_bits(c);
        if (k < 0 && cb < static_cast<uint32_t>(-k)) continue;
        const float x = bits_float(cb + k);
        if (!std::isfinite(x)) continue;
        for (const float s : {x, -x}) {
          bad += e2m1_code_bounded(s, b) != code_by_division(s, d);
          ++checked;
        }
      }
  }
  CHECK(checked > 1000000);
  CHECK(bad == 0);
}

TEST_CASE("nvfp4_codes_fast equals nvfp4_block", "[e2m1_fast]") {
  // Whole blocks through the scale: random blocks of every magnitude, zero blocks, and global
  // scales down to the subnormal ones whose divisor rounds to 0 (the division fallback).
  std::mt19937 rng(3);
  std::normal_distribution<float> n01;
  int64_t bad = 0, blocks = 0;
  for (int it = 0; it < 40000; ++it) {
    const float mag = std::ldexp(1.f, static_cast<int>(rng() % 250) - 140);
    float x[16];
    for (float& v : x) v = it % 97 == 0 ? 0.f : bf16(float_bits(n01(rng) * mag) >> 16);
    float bmax = 0.f;
    for (float v : x) bmax = std::max(bmax, std::fabs(v));
    const float amax = bmax * (it % 3 == 0 ? 1.f : (it % 3 == 1 ? 3.f : 1e-3f));
    const float g = it % 50 == 0 ? bits_float(1 + rng() % 64) : nvfp4_global_scale(amax);
    uint8_t sc_ref, packed[8];
    nvfp4_block(x, g, &sc_ref, packed);
    const uint8_t sc = nvfp4_scale_code(bmax, g);
    uint32_t w[2];
    nvfp4_codes_fast(x, fp8_e4m3_decode(sc) * g, w);
    uint32_t ref[2];
    std::memcpy(ref, packed, 8);
    bad += sc != sc_ref || w[0] != ref[0] || w[1] != ref[1];
    ++blocks;
  }
  CHECK(bad == 0);
}

TEST_CASE("e2m1_index_exact equals e2m1_index", "[e2m1_fast]") {
  int64_t bad = 0;
  for (uint32_t bits = 0; bits < 0x8000u; ++bits) bad += e2m1_index_exact(bf16(bits)) != e2m1_index(bf16(bits));
  for (float t : {0.f, 0.25f, 0.5f, 0.75f, 1.f, 1.25f, 1.5f, 1.75f, 2.f, 2.5f, 3.f, 3.5f, 4.f, 5.f, 6.f, 8.f})
    for (int k = -64; k <= 64; ++k) {
      const uint32_t tb = float_bits(t);
      if (k < 0 && tb < static_cast<uint32_t>(-k)) continue;
      const float v = bits_float(tb + k);
      bad += e2m1_index_exact(v) != e2m1_index(v);
    }
  CHECK(bad == 0);
  CHECK(e2m1_index_exact(NAN) == 7);
  CHECK(e2m1_index_exact(INFINITY) == 7);
}

TEST_CASE("e2m1_index_exact equals e2m1_index for every float", "[.e2m1_fast_all]") {
  int64_t bad = 0;
  for (uint64_t bits = 0; bits < 0x80000000ull; ++bits) {
    const float v = bits_float(static_cast<uint32_t>(bits));
    bad += e2m1_index_exact(v) != e2m1_index(v);
  }
  CHECK(bad == 0);
}

TEST_CASE("mxfp4_codes_fast equals mxfp4_block", "[e2m1_fast]") {
  std::mt19937 rng(5);
  std::normal_distribution<float> n01;
  int64_t bad = 0;
  for (int it = 0; it < 40000; ++it) {
    const float mag = std::ldexp(1.f, static_cast<int>(rng() % 270) - 150);
    float x[32];
    for (float& v : x) v = it % 89 == 0 ? (it % 2 ? -0.f : 0.f) : n01(rng) * mag;
    if (it % 7 == 0) x[rng() % 32] = -x[0];
    float bmax = 0.f;
    for (float v : x) bmax = std::max(bmax, std::fabs(v));
    uint8_t sc_ref, packed[16];
    mxfp4_block(x, &sc_ref, packed);
    uint32_t w[4], ref[4];
    const uint8_t sc = mxfp4_codes_fast(x, bmax, w);
    std::memcpy(ref, packed, 16);
    bad += sc != sc_ref || std::memcmp(w, ref, 16) != 0;
  }
  CHECK(bad == 0);
}

// ---- CUDA: stacks whose bytes exercise the device arithmetic --------------------------------

namespace {

// [E, 64, 128] bf16: every finite bf16 value once per expert (a fixed shuffle), expert e scaled
// by 2^(8e - 40) where that stays finite; NaN/Inf patterns replaced by 0.
at::Tensor every_bf16_stack(int64_t experts) {
  std::vector<uint16_t> v(experts * 65536);
  std::mt19937 rng(17);
  for (int64_t e = 0; e < experts; ++e) {
    std::vector<uint16_t> p(65536);
    for (uint32_t i = 0; i < 65536; ++i) p[i] = static_cast<uint16_t>(i);
    std::shuffle(p.begin(), p.end(), rng);
    for (uint32_t i = 0; i < 65536; ++i) {
      float f = bf16(p[i]);
      const float scaled = std::ldexp(f, static_cast<int>(8 * e) - 40);
      if (std::isfinite(scaled) && (scaled != 0.f || f == 0.f)) f = scaled;
      v[e * 65536 + i] = std::isfinite(f) ? static_cast<uint16_t>(float_bits(f) >> 16) : 0;
    }
  }
  return at::from_blob(v.data(), {experts, 64 * 1024}, at::kShort).clone().view(at::kBFloat16).view({experts, 512, 128});
}

// Blocks of 16 whose first element is the block max and whose others sit at the NVFP4 decision
// bounds of that block (rounded to bf16 down and up, and one bf16 ulp beyond), both signs.
at::Tensor nvfp4_boundary_stack() {
  std::mt19937 rng(23);
  const int64_t E = 4, R = 64, C = 256;
  std::vector<float> v(E * R * C);
  for (int64_t e = 0; e < E; ++e) {
    const float amax = std::ldexp(1.5f, static_cast<int>(e * 20) - 30);
    const float g = nvfp4_global_scale(amax);
    for (int64_t b = 0; b < R * C / 16; ++b) {
      float* x = &v[(e * R * C) + b * 16];
      const float bmax = b == 0 ? amax : bf16(float_bits(amax * std::ldexp(1.f, -static_cast<int>(rng() % 12)) *
                                                        (0.5f + (rng() % 1000) / 2000.f)) >> 16);
      x[0] = b == 0 ? amax : bmax;
      E2m1Bounds bd;
      REQUIRE(e2m1_bounds(fp8_e4m3_decode(nvfp4_scale_code(x[0], g)) * g, &bd));
      for (int i = 1; i < 16; ++i) {
        const float c = i == 15 ? -bd.neg : bd.le[rng() % 7];
        uint32_t hb = float_bits(c) >> 16;
        hb += (rng() % 3);  // down, up, one beyond
        hb = hb > 0 ? hb - 1 : 0;
        float f = bf16(hb);
        if (std::fabs(f) > x[0]) f = x[0];
        x[i] = rng() % 2 ? -f : f;
      }
    }
  }
  return at::from_blob(v.data(), {E, R, C}, at::kFloat).clone().to(at::kBFloat16);
}

}  // namespace

TEST_CASE("CUDA kernels give the CPU bytes on every bf16 value and on boundary values", "[e2m1_fast][cuda]") {
  if (!at::hasCUDA()) SKIP("no CUDA device");
  const at::Tensor every = every_bf16_stack(8), bounds = nvfp4_boundary_stack();
  for (const char* fmt : {"nvfp4", "mxfp4", "fp8", "int4", "int8", "nf4"}) {
    const QuantFormat& f = format_by_name(fmt);
    for (const auto& [name, w] : {std::pair<const char*, at::Tensor>{"every bf16", every}, {"nvfp4 bounds", bounds}}) {
      INFO(fmt << " on " << name);
      FormatParams p;
      try {
        f.validate(w.sizes().vec(), p);
      } catch (const std::exception&) {
        continue;
      }
      test::require_same_parts(f.quantize(w, p), f.quantize(w.cuda(), p));
      // A given amax that isn't the weight's: half of it (a bf16 value: fp8's fast_div path)
      // and 0.7 of it (not one: fp8 divides).
      for (const float factor : {0.5f, 0.7f}) {
        if (std::string(fmt) != "nvfp4" && std::string(fmt) != "fp8") continue;
        const at::Tensor amax = w.to(at::kFloat).abs().reshape({w.size(0), -1}).amax(1).mul(factor);
        test::require_same_parts(f.quantize(w, p, amax), f.quantize(w.cuda(), p, amax.cuda()));
      }
    }
  }
}
