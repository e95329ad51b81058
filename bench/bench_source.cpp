// `moeq bench source`: decoding a quantized source (FP8 block, DeepSeek-V3's experts; or
// MXFP4, gpt-oss's) and the headline conversion FP8-block -> NVFP4 of one expert stack, in
// GB/s against the device-to-device copy bandwidth measured in the same run.
//   decode:            bytes read (codes + scales) + bf16 written, per second
//   decode + nvfp4:    the same stack decoded then quantized (tensor/source_dequant.h, then the
//                      nvfp4 format's kernel): source bytes read + NVFP4 parts written per
//                      second, the bytes a fused kernel would have to move at least
//   fused:             the fused kernels (tensor/source_nvfp4.h: abs-max pass + quantize pass
//                      over the source, no bf16 stack): the same bytes per second, and
//                      whether its parts equal the two passes' byte for byte
// Default shape: DeepSeek-V3's routed experts of one layer, 256 x 2048 x 7168 (gate or up).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "bench/bench_timing.h"
#include "app/cli/parser.h"
#include "app/cli/commands.h"
#include "core/error.h"
#include "formats/cuda_stream.h"
#include "formats/format.h"
#include "formats/nvfp4/nvfp4.h"
#include "tensor/source_dequant.h"
#include "tensor/source_nvfp4.h"

namespace moeq::cli {
namespace {

double bytes_of(const QuantizedTensor& q) {
  double b = 0;
  for (const auto& [k, v] : q.parts) b += static_cast<double>(v.nbytes());
  return b;
}

bool same_bytes(const QuantizedTensor& a, const QuantizedTensor& b) {
  if (a.parts.size() != b.parts.size() || a.shape != b.shape) return false;
  for (const auto& [k, v] : a.parts) {
    auto it = b.parts.find(k);
    if (it == b.parts.end() || it->second.sizes() != v.sizes() || it->second.scalar_type() != v.scalar_type()) return false;
    const at::Tensor x = v.contiguous().view(at::kByte), y = it->second.contiguous().view(at::kByte);
    if (!at::equal(x, y)) return false;
  }
  return true;
}

}  // namespace

int bench_source(const std::vector<std::string>& argv) {
  std::string what, device = "cpu", source = "fp8-block", shape_text, json_path;
  int iters = 0;
  Command c("bench source",
            "Decode of a quantized source (FP8 block or MXFP4), decode + NVFP4 quantize, and the fused source -> NVFP4 "
            "kernels, vs copy bandwidth",
            "[--source fp8-block|mxfp4] [--device cpu|cuda] [--shape E,out,in] [--iters N] [--json FILE]",
            "moeq bench source --device cuda --shape 256,2048,7168");
  c.positional("benchmark", what, "the benchmark: source");
  c.option("--source", source, "the source format")->check(one_of({"fp8-block", "mxfp4"}));  // format-name-ok: source checkpoint formats
  c.option("--device", device, "where the kernels run")->check(one_of({"cpu", "cuda"}));
  c.option("--shape", shape_text, "expert stack E,out,in", "8,2048,7168 (cuda: 256,2048,7168)");
  c.option("--iters", iters, "timed iterations (median)", "2 (cuda: 10)")->check(integer_at_least(1));
  c.option("--json", json_path, "also write the results as JSON to FILE");
  if (!c.parse(argv)) return 0;
  const bool cuda = device == "cuda";
  if (cuda && !at::hasCUDA()) throw Error("--device cuda: no CUDA device");
  const auto shape = parse_shape(shape_text.empty() ? (cuda ? "256,2048,7168" : "8,2048,7168") : shape_text);
  if (iters == 0) iters = cuda ? 10 : 2;
  const int64_t E = shape[0], R = shape[1], C = shape[2];
  const at::Device dev = cuda ? at::Device(at::kCUDA) : at::Device(at::kCPU);
  const auto opt = at::TensorOptions().device(dev);
  at::manual_seed(0);

  // The source stack, quantized as the published checkpoints are (setup, not timed).
  at::Tensor codes, scales;
  if (source == "fp8-block") {
    if (R % 128 || C % 128) throw Error("--shape: out and in must be multiples of 128 for the benchmark's fp8 source");
    codes = at::empty({E, R, C}, opt.dtype(at::kFloat8_e4m3fn));
    scales = at::empty({E, R / 128, C / 128}, opt.dtype(at::kFloat));
    for (int64_t e = 0; e < E; ++e) {  // one expert at a time: fp32 temporaries stay small
      const at::Tensor w = at::randn({R / 128, 128, C / 128, 128}, opt.dtype(at::kFloat)) * 0.02;
      const at::Tensor s = w.abs().amax({1, 3}) / 448.0;
      scales[e].copy_(s);
      codes[e].copy_((w / s.unsqueeze(1).unsqueeze(3)).clamp(-448, 448).view({R, C}).to(at::kFloat8_e4m3fn));
    }
  } else {
    if (C % 32) throw Error("--shape: in must be a multiple of 32 for an mxfp4 source");
    codes = at::randint(0, 256, {E, R, C / 32, 16}, opt.dtype(at::kByte));
    scales = at::randint(118, 124, {E, R, C / 32}, opt.dtype(at::kByte));
  }
  const double src_bytes = static_cast<double>(codes.nbytes() + scales.nbytes());
  const double bf16_bytes = static_cast<double>(E * R * C) * 2;
  auto decode = [&] {
    return source == "fp8-block" ? fp8_block_dequant(codes, scales, 128, 128, "bench") : mxfp4_dequant(codes, scales, "bench");
  };

  double copy_gbs = 0;
  if (cuda) {
    at::Tensor a = at::empty({E, R, C}, opt.dtype(at::kBFloat16)), b = at::empty_like(a);
    copy_gbs = 2 * bf16_bytes / median_seconds([&] { b.copy_(a); }, true, iters) / 1e9;
  }
  at::Tensor w;
  const double t_dec = median_seconds([&] { w = decode(); }, cuda, iters);
  const QuantFormat& nv = format_by_name(kNvfp4Name);
  QuantizedTensor q;
  const double t_q = median_seconds([&] { q = nv.quantize(w, FormatParams{}); }, cuda, iters);
  const double t_both = median_seconds([&] { q = nv.quantize(decode(), FormatParams{}); }, cuda, iters);
  auto fused = [&] {
    return source == "fp8-block" ? fp8_block_to_nvfp4(codes, scales, 128, 128, FormatParams{}, std::nullopt, "bench")
                                 : mxfp4_source_to_nvfp4(codes, scales, FormatParams{}, std::nullopt, "bench");
  };
  QuantizedTensor qf;
  const double t_fused = median_seconds([&] { qf = fused(); }, cuda, iters);
  const bool fused_same = same_bytes(q, qf);
  const double out_bytes = bytes_of(q);
  const double fused_gbs = (src_bytes + out_bytes) / t_fused / 1e9;
  const double fused_moved = (2 * src_bytes + out_bytes) / t_fused / 1e9;  // the abs-max pass reads the source too
  const double dec_gbs = (src_bytes + bf16_bytes) / t_dec / 1e9;
  const double q_gbs = (bf16_bytes + out_bytes) / t_q / 1e9;
  const double both_gbs = (src_bytes + out_bytes) / t_both / 1e9;  // the bytes that must move
  const double both_moved = (src_bytes + 2 * bf16_bytes + out_bytes) / t_both / 1e9;  // what the two passes move
  std::printf("moeq bench source: %s -> nvfp4, device %s, stack [%lld, %lld, %lld] (%.2f GB %s, %.2f GB bf16), %d "
              "iterations, median\n", source.c_str(), cuda ? "cuda" : "cpu", (long long)E, (long long)R, (long long)C,
              src_bytes / 1e9, source.c_str(), bf16_bytes / 1e9, iters);
  if (cuda) std::printf("device-to-device copy: %.0f GB/s (read + write)\n", copy_gbs);
  auto pct = [&](double g) { return cuda ? 100.0 * g / copy_gbs : 0.0; };
  std::printf("%-26s %10s %10s %10s\n", "stage", "ms", "GB/s", "% copy BW");
  std::printf("%-26s %10.2f %10.1f %9.0f%%\n", ("decode " + source + " -> bf16").c_str(), t_dec * 1e3, dec_gbs, pct(dec_gbs));
  std::printf("%-26s %10.2f %10.1f %9.0f%%\n", "nvfp4 quantize (bf16)", t_q * 1e3, q_gbs, pct(q_gbs));
  std::printf("%-26s %10.2f %10.1f %9.0f%%   (bytes moved by the two passes: %.1f GB/s, %.0f%%)\n",
              "decode + nvfp4 (src->out)", t_both * 1e3, both_gbs, pct(both_gbs), both_moved, pct(both_moved));
  std::printf("%-26s %10.2f %10.1f %9.0f%%   (bytes moved by its two passes over the source: %.1f GB/s, %.0f%%)\n",
              "fused -> nvfp4 (src->out)", t_fused * 1e3, fused_gbs, pct(fused_gbs), fused_moved, pct(fused_moved));
  std::printf("fused == decode then nvfp4, byte for byte: %s\n", fused_same ? "yes" : "NO");
  if (!json_path.empty()) {
    nlohmann::ordered_json j = {{"source", source}, {"device", cuda ? "cuda" : "cpu"}, {"shape", shape},
                                {"copy_gbs", copy_gbs}, {"decode_ms", t_dec * 1e3}, {"decode_gbs", dec_gbs},
                                {"nvfp4_ms", t_q * 1e3}, {"nvfp4_gbs", q_gbs}, {"decode_nvfp4_ms", t_both * 1e3},
                                {"decode_nvfp4_gbs", both_gbs}, {"decode_nvfp4_moved_gbs", both_moved},
                                {"fused_nvfp4_ms", t_fused * 1e3}, {"fused_nvfp4_gbs", fused_gbs},
                                {"fused_nvfp4_moved_gbs", fused_moved}, {"fused_same_bytes", fused_same}};
    std::ofstream(json_path) << j.dump(1) << "\n";
  }
  if (!fused_same) throw Error("bench source: the fused kernels' NVFP4 differs from decode then nvfp4");
  return 0;
}

}  // namespace moeq::cli
