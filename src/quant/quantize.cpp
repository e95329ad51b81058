#include "quant/quantize.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "calib/calib_file.h"
#include "core/bounded_queue.h"
#include "core/error.h"
#include "core/format_util.h"
#include "core/progress.h"
#include "export/report.h"
#include "export/fused_consumer_rules.h"
#include "export/layout.h"
#include "formats/cuda_stream.h"
#include "io/atomic_dir.h"
#include "io/aten_view.h"
#include "io/safetensors_writer.h"
#include "io/checkpoint.h"
#include "io/output_guard.h"
#include "model/expert_check.h"
#include "model/plugin.h"
#include "quant/batches.h"
#include "quant/dry_run.h"
#include "quant/export_layout.h"
#include "quant/gptq_job.h"
#include "quant/input_scales.h"
#include "quant/site_errors.h"
#include "recipe/recipe.h"
#include "io/text_file.h"

namespace fs = std::filesystem;

namespace moeq {
namespace {

uint64_t site_bytes(const Checkpoint& ck, const Site& s) {
  return static_cast<uint64_t>(s.view.rows * s.view.cols) * dtype_size(ck.info(s.view.tensor).dtype);
}

}  // namespace

void quantize_checkpoint(const QuantizeOptions& opt) {
  const auto t_begin = std::chrono::steady_clock::now();
  // Never write over, into or around an input (the bf16 weights would be gone).
  refuse_output_over_input(opt.out, "-o", opt.model, "the source checkpoint");
  refuse_output_over_input(opt.out, "-o", opt.recipe, "the recipe");
  refuse_output_over_input(opt.out, "-o", opt.calib, "--calib");
  refuse_output_over_input(opt.dump_dequant, "--dump-dequant", opt.model, "the source checkpoint");
  const ModelConfig cfg = load_config(opt.model);
  const ArchPlugin& plugin = plugin_for(cfg);
  auto ck = Checkpoint::open(opt.model);
  const SiteMap map = map_sites(plugin, cfg, *ck);
  require_routed_experts(map, cfg, opt.model, plugin.family, *ck);
  Recipe recipe = load_recipe(opt.recipe);
  if (opt.weight_only) recipe.weight_only = true;
  Plan plan = make_plan(recipe, map.sites, opt.strict);
  const ExportWriter& writer = *export_layout_for(recipe).writer;

  // Nothing silent: an expert left in bf16 needs a rule that says so.
  std::vector<std::string> unruled;
  size_t input_quant_sites = 0;
  for (const auto& sp : plan.sites) {
    if (sp.site->role == Role::Expert && !sp.quantize && !sp.rule) unruled.push_back(sp.site->name);
    if (sp.input_quant) ++input_quant_sites;
  }
  if (!unruled.empty())
    throw Error(opt.recipe + ": " + std::to_string(unruled.size()) + " expert sites match no rule and would stay " +
                "unquantized (first: " + unruled[0] + "); add a rule for them, or one with enable: false to keep them");
  try {
    for (const auto& sp : plan.sites)
      if (sp.quantize) writer.check(sp);
    if (recipe.consumer_checks)
      check_fused_consumer_plan(plan, plugin.family, writer.name());
    else
      std::fprintf(stderr, "warning: %s: consumer_checks: false: the export is not checked against vLLM's loader "
                   "(fusion groups, whole MoE layers, gpt-oss expert layout); it may not load there\n", opt.recipe.c_str());
  } catch (const Error& e) {
    throw Error(opt.recipe + ": " + e.what());
  }
  if (input_quant_sites && opt.calib.empty())
    throw Error(opt.recipe + ": the recipe quantizes activations of " + std::to_string(input_quant_sites) +
                " sites (input_quant), which needs input scales from calibration: pass --calib CALIB.h5, or set "
                "weight_only: true in the recipe for a weight-only export");
  // Activation scales from calibration, for the model it was made for only.
  CalibData calib;
  std::map<std::string, InputScale> in_scales;
  std::vector<std::string> calib_warnings;
  // GPTQ: the experts' Hessians from the side file beside calib.h5 (quant/gptq_job.h).
  const std::shared_ptr<const HessianFile> hessians =
      attach_hessians_for(plan, opt.calib, plan_uses_gptq(plan) ? model_fingerprint(cfg, *ck) : std::string());
  if (!opt.calib.empty()) {
    calib = read_calib_file(opt.calib);
    require_calib_matches(calib, opt.calib, cfg, *ck, opt.model);
    in_scales = input_scales(plan, calib, opt.calib);
    if (in_scales.empty() && !hessians)
      calib_warnings.push_back("--calib " + opt.calib + ": the recipe quantizes no activations (no input_quant site" +
                               std::string(recipe.weight_only ? ", weight-only" : "") + "), so the file is not used");
  }
  if (!map.unclaimed.empty() && opt.strict)
    throw Error(opt.model + ": " + std::to_string(map.unclaimed.size()) + " tensors not claimed by plugin " +
                plugin.family + " (first: " + map.unclaimed[0] + ") (--strict)");
  const at::Device dev = opt.device == "cuda" ? at::Device(at::kCUDA) : at::Device(at::kCPU);
  if (opt.device != "cpu" && opt.device != "cuda") throw Error("--device must be cpu or cuda, got '" + opt.device + "'");
  if (dev.is_cuda() && !at::hasCUDA()) throw Error("--device cuda: no CUDA device is available (use --device cpu)");

  if (opt.dry_run) {
    std::printf("dry run: %s with %s, export %s to %s (nothing written)\n", opt.model.c_str(), opt.recipe.c_str(),
                recipe.export_format.c_str(), opt.out.c_str());
    print_plan(stdout, plan, *ck, recipe.export_format);
    if (fs::exists(opt.out) && !opt.overwrite)
      std::printf("note: %s exists: the run itself would refuse it without --overwrite\n", opt.out.c_str());
    return;
  }
  AtomicDir out(opt.out, opt.overwrite);
  ShardWriter sw(out.path(), opt.max_shard_bytes);
  std::unique_ptr<ShardWriter> dump;
  if (!opt.dump_dequant.empty()) {
    fs::create_directories(opt.dump_dequant);
    dump = std::make_unique<ShardWriter>(opt.dump_dequant, ~0ull);
  }
  Progress progress("quantize", ck->total_bytes());
  ReportData report;
  report.model = opt.model;
  report.recipe = recipe;
  report.plugin = plugin.family;
  report.export_format = recipe.export_format;
  report.warnings = plan.warnings;
  report.warnings.insert(report.warnings.end(), calib_warnings.begin(), calib_warnings.end());
  for (const auto& w : calib_warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  if (!opt.calib.empty()) {
    report.calib = &calib;
    report.calib_path = opt.calib;
    for (const auto& [name, in] : in_scales) report.input_scales[name] = in.scale;
  }
  report.device = opt.device;

  // The export's tensors in order: copy-through, split-out unquantized sites, quantized jobs.
  const ExportOrder order = export_order(*ck, plan);
  const auto& jobs = order.jobs;
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"producer", "moeq"}, {"recipe", recipe.name}};
  // Streaming: with the layout known up front the shard files are created now and every
  // tensor is written as it comes, overlapping the quantization of later jobs; else the
  // shards are buffered and written when full (same bytes either way).
  // MOEQ_BUFFERED_EXPORT=1 forces the buffered path (benchmarks compare the two).
  const bool buffered_env = std::getenv("MOEQ_BUFFERED_EXPORT") != nullptr;
  std::string buffered_why = buffered_env ? "MOEQ_BUFFERED_EXPORT is set" : "QuantizeOptions::stream_export is off";
  if (opt.stream_export && !buffered_env)
    if (auto layout = plan_export_layout(*ck, order, writer, in_scales, &buffered_why))
      sw.stream(*layout, meta);
  auto write_copy_through = [&] {
    for (const auto& name : order.copy_through) {
      const TensorInfo& info = ck->info(name);
      sw.add_raw(name, dtype_name(info.dtype), info.shape, ck->data(name), info.nbytes());
      progress.advance(info.nbytes());
    }
  };
  // 1. Buffered: first, as they are ordered. Streaming: by a thread of their own while the
  //    quantize stages run (they land in other shards than most quantized parts, so
  //    the two writers rarely wait for the same file).
  if (!sw.streaming()) write_copy_through();
  // 2. Unquantized sites inside partly quantized fused stacks.
  for (const SitePlan* sp : order.split_sites) {
    at::Tensor w = with_site_context(*ck, *sp->site, [&] {
      at::Tensor c = site_weight(*ck, *sp->site).contiguous();
      sw.add(sp->site->module + ".weight", c);
      return c;
    });
    report.bytes_after[sp->site->name] = w.nbytes();
    progress.advance(w.nbytes());
  }
  // 3. Quantized sites, batched; gate and up of the same experts share their per-tensor amax.
  //    Three stages overlap: a loader thread gathers each job's stacks into (pinned) host
  //    memory, this thread moves them to the device and quantizes them (one sync per stack,
  //    for the NaN check, and one for the results' copy back), a writer thread hands the
  //    results to the export writer (streaming: straight into the files).
  const bool pinned = dev.is_cuda();
  struct Loaded {
    size_t job;
    std::vector<at::Tensor> stacks;
  };
  struct Done {
    size_t job;
    std::vector<QuantizedTensor> qs;
    std::vector<at::Tensor> deqs;
  };
  // Busy seconds per stage (MOEQ_TIMING=1 prints them): where an export's time goes.
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); };
  double t_load = 0, t_device = 0, t_write = 0;
  const auto t_start = Clock::now();
  BoundedQueue<Loaded> loaded(2);
  BoundedQueue<Done> done(2);
  std::mutex err_mu;
  std::exception_ptr err;
  auto fail = [&](std::exception_ptr e) {
    {
      std::lock_guard<std::mutex> lk(err_mu);
      if (!err) err = e;
    }
    loaded.close();
    done.close();
  };
  std::thread loader([&] {
    try {
      for (size_t j = 0; j < jobs.size(); ++j) {
        Loaded l{j, {}};
        const auto a = Clock::now();
        for (const SiteBatch& b : jobs[j]) l.stacks.push_back(gather_stack(*ck, b, pinned));
        t_load += since(a);
        if (!loaded.push(std::move(l))) return;
      }
      loaded.close();
    } catch (...) {
      fail(std::current_exception());
    }
  });
  double t_copy = 0;
  SourceConversionCounts conversions;  // MXFP4 source -> NVFP4 blocks (this thread only)
  std::thread copier([&] {
    if (!sw.streaming()) return;
    try {
      const auto a = Clock::now();
      write_copy_through();
      t_copy = since(a);
    } catch (...) {
      fail(std::current_exception());
    }
  });
  std::thread writer_thread([&] {
    try {
      while (auto d = done.pop()) {
        const auto a = Clock::now();
        const auto& job = jobs[d->job];
        for (size_t j = 0; j < job.size(); ++j) {
          const SiteBatch& b = job[j];
          QuantizedTensor& q = d->qs[j];
          // Buffered: pinned staging goes back to its cache, the shard keeps a pageable copy
          // until flushed. Streaming writes from the pinned memory at once.
          if (pinned && !sw.streaming())
            for (auto& [name, t] : q.parts) t = t.clone();
          for (size_t i = 0; i < b.sites.size(); ++i) {
            with_site_context(*ck, *b.sites[i]->site, [&] {
              const QuantizedSite qs = quantized_site(b, i, q, in_scales);
              report.bytes_after[b.sites[i]->site->name] = writer.write(qs, sw);
              if (dump) dump->add(b.sites[i]->site->module + ".weight", qs.index >= 0 ? d->deqs[j].select(0, qs.index) : d->deqs[j]);
            });
            progress.advance(site_bytes(*ck, *b.sites[i]->site));
          }
        }
        t_write += since(a);
      }
    } catch (...) {
      fail(std::current_exception());
    }
  });
  try {
    while (auto l = loaded.pop()) {
      const auto a = Clock::now();
      const auto& job = jobs[l->job];
      std::vector<at::Tensor> stacks;
      for (auto& h : l->stacks) stacks.push_back(h.to(dev, /*non_blocking=*/true));
      l->stacks.clear();
      Done d{l->job, quantize_job(*ck, job, stacks, &conversions), {}};
      for (size_t j = 0; j < job.size(); ++j) {
        const QuantFormat& fmt = format_by_name(job[j].sites[0]->format);
        d.deqs.push_back(dump ? fmt.dequantize(d.qs[j], at::kFloat).to(at::kCPU) : at::Tensor());
      }
      if (dev.is_cuda()) {  // results to pinned host memory, then one sync for the job
        for (auto& q : d.qs)
          for (auto& [name, t] : q.parts) {
            at::Tensor h = at::empty(t.sizes(), t.options().device(at::kCPU).pinned_memory(true));
            h.copy_(t, /*non_blocking=*/true);
            t = h;
          }
        cuda_synchronize();
      }
      t_device += since(a);
      if (!done.push(std::move(d))) break;
    }
    done.close();
  } catch (...) {
    fail(std::current_exception());
  }
  loader.join();
  writer_thread.join();
  copier.join();
  if (err) std::rethrow_exception(err);
  const double t_stages = since(t_start);
  // Stored tensors whose every site was quantized are fully accounted for; fused
  // tensors with a mix were split above.
  const bool streamed = sw.streaming();
  const auto t_finish0 = Clock::now();
  sw.finish(meta);
  const double t_finish = since(t_finish0);
  if (dump) dump->finish();
  progress.done();

  // config.json with the consumer's quantization_config; other files copied unchanged.
  nlohmann::json config = cfg.raw;
  writer.finish(out.path(), config, plan, recipe);
  write_text_file(out.path() + "/config.json", config.dump(2) + "\n");
  for (const auto& e : fs::directory_iterator(opt.model)) {
    const std::string f = e.path().filename();
    if (!e.is_regular_file() || e.path().extension() == ".safetensors" || f == "config.json" ||
        f == "model.safetensors.index.json" || f == "hf_quant_config.json" || f.rfind("report.", 0) == 0 ||
        f == kOutputMarker)
      continue;
    fs::copy_file(e.path(), out.path() + "/" + f);
  }
  report.mxfp4_exact_blocks = conversions.mxfp4_exact_blocks;
  report.mxfp4_requantized_blocks = conversions.mxfp4_requantized_blocks;
  if (conversions.mxfp4_exact_blocks + conversions.mxfp4_requantized_blocks > 0)
    std::printf("mxfp4 -> nvfp4: %lld blocks of 32 converted exactly, %lld re-quantized (scale outside E4M3 under the "
                "global scale)\n", (long long)conversions.mxfp4_exact_blocks, (long long)conversions.mxfp4_requantized_blocks);
  if (hessians) {
    const auto fb = hessians->fallbacks();
    size_t gptq_sites = 0;
    for (const auto& sp : plan.sites) gptq_sites += sp.quantize && sp.calibrator.is_gptq();
    for (const auto& line : fb) report.warnings.push_back("gptq fallback: " + line);
    std::printf("gptq: %zu expert sites with Hessians from %s; %zu kept plain rounding (report.md lists them)\n", gptq_sites,
                hessians->path().c_str(), fb.size());
  }
  report.source_bytes = ck->total_bytes();
  report.export_bytes = sw.bytes_written();
  write_report(out.path(), report, plan, map, *ck);
  out.commit();
  if (std::getenv("MOEQ_TIMING"))
    std::fprintf(stderr,
                 "moeq timing: setup %.2f s, quantize stages %.2f s (busy: gather %.2f s, device %.2f s, writer %.2f s, "
                 "copy-through writer %.2f s), "
                 "shard files %.2f s, %zu jobs; shard writes %s\n",
                 std::chrono::duration<double>(t_start - t_begin).count(), t_stages, t_load, t_device, t_write, t_copy, t_finish, jobs.size(),
                 streamed ? "streamed" : ("buffered (" + buffered_why + ")").c_str());
  std::printf("wrote %s: %s -> %s (%.2fx smaller); report: %s/report.md\n", opt.out.c_str(),
              human_bytes(report.source_bytes).c_str(), human_bytes(report.export_bytes).c_str(),
              static_cast<double>(report.source_bytes) / std::max<uint64_t>(1, report.export_bytes), opt.out.c_str());
}

}  // namespace moeq
