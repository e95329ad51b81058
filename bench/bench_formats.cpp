// `moeq bench formats`: quantize throughput of every registered format's kernel against
// the torch-op implementation of the same math, in the same run, on one expert stack.
// GB/s counts the bf16 input bytes (numel * 2) per second; on CUDA the device-to-device
// copy bandwidth measured in the same run (bytes read + written) gives "% of copy BW".
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
#include <ATen/Parallel.h>

namespace moeq::cli {
namespace {

bool same_parts(const QuantizedTensor& a, const QuantizedTensor& b) {
  if (a.parts.size() != b.parts.size()) return false;
  for (const auto& [k, v] : a.parts) {
    auto it = b.parts.find(k);
    if (it == b.parts.end() || v.sizes() != it->second.sizes() || v.scalar_type() != it->second.scalar_type()) return false;
    if (!at::equal(v.contiguous().view(at::kByte), it->second.contiguous().view(at::kByte))) return false;
  }
  return true;
}

}  // namespace

int cmd_bench(const std::vector<std::string>& argv) {
  if (!argv.empty() && argv[0] == "calibrate") return bench_calibrate(argv);
  if (!argv.empty() && argv[0] == "source") return bench_source(argv);
  std::string what, device = "cpu", shape_text, formats_text, json_path;
  int iters = 0, threads = 0;
  Command c("bench formats", "Throughput of every format's kernel vs its torch-op baseline on one expert stack",
            "[--device cpu|cuda] [--shape E,out,in] [--formats a,b] [--iters N] [--threads N] [--json FILE]",
            "moeq bench formats --device cuda --shape 128,1408,2816 --formats nvfp4,fp8");
  c.positional("formats", what, "the benchmark: formats (moeq bench calibrate --help for the other)");
  c.option("--device", device, "where the kernels run")->check(one_of({"cpu", "cuda"}));
  c.option("--shape", shape_text, "expert stack E,out,in (bf16)", "8,1408,2816 (cuda: 128,1408,2816)");
  c.option("--formats", formats_text, "comma list of formats", "every registered format");
  c.option("--iters", iters, "timed iterations (median)", "3 (cuda: 20)")->check(integer_at_least(1));
  c.option("--threads", threads, "CPU threads (at::set_num_threads)", "torch's default")->check(integer_at_least(1));
  c.option("--json", json_path, "also write the results as JSON to FILE");
  if (!c.parse(argv)) return 0;
  if (what != "formats") c.fail("moeq bench: 'formats' or 'calibrate', got '" + what + "'");
  const bool cuda = device == "cuda";
  if (cuda && !at::hasCUDA()) throw Error("--device cuda: no CUDA device");
  const auto shape = parse_shape(shape_text.empty() ? (cuda ? "128,1408,2816" : "8,1408,2816") : shape_text);
  if (iters == 0) iters = cuda ? 20 : 3;
  if (threads > 0) at::set_num_threads(threads);
  std::vector<std::string> formats = format_names();
  if (!formats_text.empty()) {
    formats.clear();
    std::stringstream ss(formats_text);
    std::string f;
    while (std::getline(ss, f, ',')) formats.push_back(f);
  }
  const at::Device dev = cuda ? at::Device(at::kCUDA) : at::Device(at::kCPU);
  at::manual_seed(0);
  at::Tensor w = (at::randn(shape, at::TensorOptions().dtype(at::kFloat).device(dev)) * 0.02).to(at::kBFloat16);
  const double in_bytes = static_cast<double>(w.numel()) * 2;
  double copy_gbs = 0;
  if (cuda) {
    at::Tensor dst = at::empty_like(w);
    const double t = median_seconds([&] { dst.copy_(w); }, true, iters);
    copy_gbs = 2 * in_bytes / t / 1e9;
  }
  std::printf("moeq bench formats: device %s, shape [%lld, %lld, %lld] bf16 (%.2f GB), %d iterations, median\n",
              cuda ? "cuda" : "cpu", (long long)shape[0], (long long)shape[1], (long long)shape[2], in_bytes / 1e9, iters);
  if (cuda) std::printf("device-to-device copy: %.0f GB/s (read + write)\n", copy_gbs);
  std::printf("%-8s %12s %12s %10s %12s %10s %12s %10s\n", "format", "kernel GB/s", "torch GB/s", "speedup", "moved GB/s",
              "% copy BW", "same bytes", "kernel ms");
  nlohmann::ordered_json j;
  j["device"] = cuda ? "cuda" : "cpu";
  j["shape"] = shape;
  j["copy_gbs"] = copy_gbs;
  j["threads"] = at::get_num_threads();
  for (const auto& name : formats) {
    const QuantFormat& f = format_by_name(name);
    FormatParams p;
    try {
      f.validate(shape, p);
    } catch (const Error& e) {  // e.g. int4 group 128 on in = 704: reported, not benchmarked
      std::printf("%-8s n/a: %s\n", name.c_str(), e.what());
      j["formats"][name] = {{"skipped", e.what()}};
      continue;
    }
    QuantizedTensor qk, qt;
    const double tk = median_seconds([&] { qk = f.quantize(w, p); }, cuda, iters);
    const double tt = median_seconds([&] { qt = f.quantize_torch_ops(w, p); }, cuda, iters);
    const bool same = same_parts(qk, qt);
    double out_bytes = 0;
    for (const auto& [k, v] : qk.parts) out_bytes += static_cast<double>(v.nbytes());
    const double gk = in_bytes / tk / 1e9, gt = in_bytes / tt / 1e9;
    const double moved = (in_bytes + out_bytes) / tk / 1e9;  // bytes read + written, like the copy
    const double pct = cuda ? 100.0 * moved / copy_gbs : 0;
    std::printf("%-8s %12.1f %12.1f %9.1fx %12.1f %9.0f%% %12s %10.3f\n", name.c_str(), gk, gt, gk / gt, moved, pct,
                same ? "yes" : "NO", tk * 1e3);
    j["formats"][name] = {{"kernel_gbs", gk}, {"torch_ops_gbs", gt}, {"speedup", gk / gt}, {"moved_gbs", moved}, {"pct_copy_bw", pct},
                          {"same_bytes", same}, {"kernel_ms", tk * 1e3}, {"torch_ops_ms", tt * 1e3}};
  }
  if (!json_path.empty()) std::ofstream(json_path) << j.dump(1) << "\n";
  return 0;
}

}  // namespace moeq::cli
