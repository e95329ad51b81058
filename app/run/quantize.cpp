#include "app/run/quantize.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>

#include "app/run/dry_run.h"
#include "app/run/export_layout.h"
#include "app/run/finish_export.h"
#include "app/run/quantize_stages.h"
#include "app/run/run_plan.h"
#include "core/error.h"
#include "core/format_util.h"
#include "core/progress.h"
#include "export/report.h"
#include "export/shard_writer.h"
#include "io/atomic_dir.h"
#include "io/output_guard.h"
#include "model/model.h"
#include "tensor/aten_view.h"
#include "tensor/site_errors.h"

namespace fs = std::filesystem;

// The run: open the model -> plan (app/run/run_plan.h) -> the export's tensors (copy-through,
// split-out unquantized sites, the quantized jobs in overlapping stages: quantize_stages.h)
// -> finish the export directory (finish_export.h) and rename it into place.
namespace moeq {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

// Never write over, into or around an input (the bf16 weights would be gone).
void refuse_outputs_over_inputs(const QuantizeOptions& opt) {
  refuse_output_over_input(opt.out, "-o", opt.model, "the source checkpoint");
  refuse_output_over_input(opt.out, "-o", opt.recipe, "the recipe");
  refuse_output_over_input(opt.out, "-o", opt.calib, "--calib");
  refuse_output_over_input(opt.dump_dequant, "--dump-dequant", opt.model, "the source checkpoint");
}

void print_dry_run(const QuantizeOptions& opt, const RunPlan& run, const Checkpoint& ck) {
  std::printf("dry run: %s with %s, export %s to %s (nothing written)\n", opt.model.c_str(), opt.recipe.c_str(),
              run.recipe.export_format.c_str(), opt.out.c_str());
  print_plan(stdout, run.plan, ck, run.recipe.export_format);
  if (fs::exists(opt.out) && !opt.overwrite)
    std::printf("note: %s exists: the run itself would refuse it without --overwrite\n", opt.out.c_str());
}

ReportData start_report(const QuantizeOptions& opt, const Model& model, const RunPlan& run) {
  ReportData report;
  report.model = opt.model;
  report.recipe = run.recipe;
  report.plugin = model.plugin->family;
  report.export_format = run.recipe.export_format;
  report.warnings = run.plan.warnings;
  report.warnings.insert(report.warnings.end(), run.calib_warnings.begin(), run.calib_warnings.end());
  for (const auto& w : run.calib_warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  if (!opt.calib.empty()) {
    report.calib = &run.calib;
    report.calib_path = opt.calib;
    for (const auto& [name, in] : run.in_scales) report.input_scales[name] = in.scale;
  }
  report.device = opt.device;
  return report;
}

// The export's shard files, streamed where the layout is known up front: the files are
// created now and every tensor is written as it comes, overlapping the quantization of later
// jobs; else the shards are buffered and written when full (same bytes either way).
// MOEQ_BUFFERED_EXPORT=1 forces the buffered path (benchmarks compare the two). Returns why
// the shards are buffered ("" when they stream).
std::string open_shards(const QuantizeOptions& opt, const Checkpoint& ck, const RunPlan& run, const ExportOrder& order,
                        const std::map<std::string, std::string>& meta, ShardWriter& sw) {
  const bool buffered_env = std::getenv("MOEQ_BUFFERED_EXPORT") != nullptr;
  std::string why = buffered_env ? "MOEQ_BUFFERED_EXPORT is set" : "QuantizeOptions::stream_export is off";
  if (opt.stream_export && !buffered_env)
    if (auto layout = plan_export_layout(ck, order, *run.writer, run.in_scales, &why)) sw.stream(*layout, meta);
  return sw.streaming() ? std::string() : why;
}

// Unquantized sites inside partly quantized fused stacks, per expert.
void write_split_sites(const Checkpoint& ck, const ExportOrder& order, ShardWriter& sw, Progress& progress,
                       ReportData& report) {
  for (const SitePlan* sp : order.split_sites) {
    at::Tensor w = with_site_context(ck, *sp->site, [&] {
      at::Tensor c = site_weight(ck, *sp->site).contiguous();
      sw.add(sp->site->module + ".weight", c);
      return c;
    });
    report.bytes_after[sp->site->name] = w.nbytes();
    progress.advance(w.nbytes());
  }
}

void print_timing(double setup, const StageTimes& t, double shard_files, size_t jobs, const std::string& buffered_why) {
  std::fprintf(stderr,
               "moeq timing: setup %.2f s, quantize stages %.2f s (busy: gather %.2f s, device %.2f s, writer %.2f s, "
               "copy-through writer %.2f s), "
               "shard files %.2f s, %zu jobs; shard writes %s; to the device %.3f GB (%lld of %lld stacks as their "
               "quantized source's bytes, decoded there), back %.3f GB\n",
               setup, t.total, t.load, t.device, t.write, t.copy, shard_files, jobs,
               buffered_why.empty() ? "streamed" : ("buffered (" + buffered_why + ")").c_str(), t.uploaded_bytes / 1e9,
               static_cast<long long>(t.source_stacks), static_cast<long long>(t.stacks), t.downloaded_bytes / 1e9);
}

}  // namespace

void quantize_checkpoint(const QuantizeOptions& opt) {
  const auto t_begin = Clock::now();
  refuse_outputs_over_inputs(opt);
  const Model model = open_model(opt.model);
  require_routed_experts(model);
  const RunPlan run = plan_quantize_run(opt, model);
  const Checkpoint& ck = *model.checkpoint;
  if (opt.dry_run) return print_dry_run(opt, run, ck);

  AtomicDir out(opt.out, opt.overwrite);
  ShardWriter sw(out.path(), opt.max_shard_bytes);
  std::unique_ptr<ShardWriter> dump;
  if (!opt.dump_dequant.empty()) {
    fs::create_directories(opt.dump_dequant);
    dump = std::make_unique<ShardWriter>(opt.dump_dequant, ~0ull);
  }
  Progress progress("quantize", ck.total_bytes());
  ReportData report = start_report(opt, model, run);
  // The export's tensors in order: copy-through, split-out unquantized sites, quantized jobs.
  const ExportOrder order = export_order(ck, run.plan);
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"producer", "moeq"}, {"recipe", run.recipe.name}};
  const std::string buffered_why = open_shards(opt, ck, run, order, meta, sw);
  // AWQ's gate_up fold changes tensors that are otherwise copied through (the norm before the
  // MoE, an unquantized router or shared expert): their folded bytes, in the source dtype.
  const std::map<std::string, at::Tensor> folded = run.awq ? awq_folded_tensors(*run.awq, ck, model.sites) : std::map<std::string, at::Tensor>{};
  auto write_copy_through = [&] {
    for (const auto& name : order.copy_through) {
      const TensorInfo& info = ck.info(name);
      if (auto f = folded.find(name); f != folded.end()) {
        if (static_cast<uint64_t>(f->second.nbytes()) != info.nbytes())
          throw Error(name + ": the AWQ-folded tensor has " + std::to_string(f->second.nbytes()) + " bytes, the source " +
                      std::to_string(info.nbytes()) + " (internal error)");
        sw.add_raw(name, dtype_name(info.dtype), info.shape, static_cast<const uint8_t*>(f->second.data_ptr()), info.nbytes());
        progress.advance(info.nbytes());
        continue;
      }
      sw.add_raw(name, dtype_name(info.dtype), info.shape, ck.data(name), info.nbytes());
      progress.advance(info.nbytes());
    }
  };
  if (!sw.streaming()) write_copy_through();  // buffered: first, as they are ordered
  write_split_sites(ck, order, sw, progress, report);
  const double setup = since(t_begin);
  StageResults stages = run_quantize_stages(
      StageInputs{ck, order.jobs, run.device, *run.writer, sw, dump.get(), run.in_scales, progress, write_copy_through});
  report.bytes_after.insert(stages.bytes_after.begin(), stages.bytes_after.end());

  const auto t_finish = Clock::now();
  sw.finish(meta);
  const double shard_files = since(t_finish);
  if (dump) dump->finish();
  progress.done();
  write_config_and_side_files(out.path(), model, run);
  note_conversions_and_gptq(run, stages.conversions, report);
  report.source_bytes = ck.total_bytes();
  report.export_bytes = sw.bytes_written();
  write_report(out.path(), report, run.plan, model.sites, ck);
  out.commit();
  if (std::getenv("MOEQ_TIMING")) print_timing(setup, stages.times, shard_files, order.jobs.size(), buffered_why);
  std::printf("wrote %s: %s -> %s (%.2fx smaller); report: %s/report.md\n", opt.out.c_str(),
              human_bytes(report.source_bytes).c_str(), human_bytes(report.export_bytes).c_str(),
              static_cast<double>(report.source_bytes) / std::max<uint64_t>(1, report.export_bytes), opt.out.c_str());
}

}  // namespace moeq
