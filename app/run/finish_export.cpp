#include "app/run/finish_export.h"

#include <cstdio>
#include <filesystem>

#include "io/atomic_dir.h"
#include "io/text_file.h"

namespace fs = std::filesystem;

namespace moeq {

void write_config_and_side_files(const std::string& out_dir, const Model& model, const RunPlan& run) {
  nlohmann::json config = model.config.raw;
  run.writer->finish(out_dir, config, run.plan, run.recipe);
  if (run.awq) write_awq_scales(*run.awq, out_dir);  // for verify --source; consumers read the weights only
  write_text_file(out_dir + "/config.json", config.dump(2) + "\n");
  for (const auto& e : fs::directory_iterator(model.dir)) {
    const std::string f = e.path().filename();
    if (!e.is_regular_file() || e.path().extension() == ".safetensors" || f == "config.json" ||
        f == "model.safetensors.index.json" || f == "hf_quant_config.json" || f.rfind("report.", 0) == 0 ||
        f == kOutputMarker)
      continue;
    fs::copy_file(e.path(), out_dir + "/" + f);
  }
}

void note_conversions_and_gptq(const RunPlan& run, const SourceConversionCounts& conversions, ReportData& report) {
  report.mxfp4_exact_blocks = conversions.mxfp4_exact_blocks;
  report.mxfp4_requantized_blocks = conversions.mxfp4_requantized_blocks;
  if (conversions.mxfp4_exact_blocks + conversions.mxfp4_requantized_blocks > 0)
    std::printf("mxfp4 -> nvfp4: %lld blocks of 32 converted exactly, %lld re-quantized (scale outside E4M3 under the "
                "global scale)\n", (long long)conversions.mxfp4_exact_blocks, (long long)conversions.mxfp4_requantized_blocks);
  if (run.awq) {
    size_t awq_sites = 0, searched = 0;
    for (const auto& sp : run.plan.sites) awq_sites += sp.quantize && sp.calibrator.is_awq();
    size_t norms = 0, attn_in = 0, attn_o = 0;
    std::string alphas, in_alphas, o_alphas;
    auto note = [](std::string& list, int64_t layer, double alpha) {
      char a[64];
      std::snprintf(a, sizeof a, "%s%lld: %g", list.empty() ? "" : ", ", static_cast<long long>(layer), alpha);
      list += a;
    };
    for (const auto& [layer, l] : run.awq->layers) {
      if (l.alpha.defined()) searched += (l.alpha >= 0).sum().item<int64_t>();
      attn_in += l.attn_in.defined();
      attn_o += l.attn_o.defined();
      if (l.attn_in.defined()) note(in_alphas, layer, l.attn_in_alpha);
      if (l.attn_o.defined()) note(o_alphas, layer, l.attn_o_alpha);
      if (!l.gate_up.defined()) continue;
      norms += l.gate_up_alpha >= 0;
      note(alphas, layer, l.gate_up_alpha);
    }
    for (const auto& line : run.awq->fallbacks) report.warnings.push_back("awq fallback: " + line);
    std::printf("awq: %zu sites; down_proj scales searched for %zu experts, folded into up_proj; gate_up scales for %zu "
                "layers, folded into the norm before the MoE (alpha by layer: %s); attention: qkv scales for %zu layers "
                "(folded into input_layernorm; alpha %s), o_proj scales for %zu (folded into v_proj; alpha %s); %zu fallbacks "
                "(report.md lists them)\n",
                awq_sites, searched, norms, alphas.empty() ? "none" : alphas.c_str(), attn_in, in_alphas.empty() ? "none" : in_alphas.c_str(),
                attn_o, o_alphas.empty() ? "none" : o_alphas.c_str(), run.awq->fallbacks.size());
    return;
  }
  if (!run.hessians) return;
  const auto fb = run.hessians->fallbacks();
  size_t gptq_experts = 0, gptq_other = 0;
  for (const auto& sp : run.plan.sites)
    if (sp.quantize && sp.calibrator.is_gptq()) ++(sp.site->role == Role::Expert && sp.site->expert >= 0 ? gptq_experts : gptq_other);
  for (const auto& line : fb) report.warnings.push_back("gptq fallback: " + line);
  std::printf("gptq: %zu sites (%zu routed experts, %zu other linears) with Hessians from %s; %zu kept plain rounding "
              "(report.md lists them)\n", gptq_experts + gptq_other, gptq_experts, gptq_other, run.hessians->path().c_str(), fb.size());
}

}  // namespace moeq
