#include "calib/calibrators/gptq_job.h"

#include <algorithm>
#include <map>
#include <vector>

#include "calib/calibrators/awq_fold.h"
#include "calib/calibrators/awq_job.h"
#include "core/error.h"
#include "calib/calibrators/gptq.h"
#include "calib/calibrators/int_mse_scales.h"

namespace moeq {

bool plan_uses_gptq(const Plan& plan) {
  for (const auto& sp : plan.sites)
    if (sp.quantize && sp.calibrator.needs_hessians()) return true;
  return false;
}

void attach_hessians(Plan& plan, const std::shared_ptr<const HessianFile>& hessians) {
  for (auto& sp : plan.sites) {
    if (!sp.quantize || !sp.calibrator.needs_hessians()) continue;
    const bool expert = sp.site->role == Role::Expert && sp.site->expert >= 0;
    const std::string rule = sp.rule ? sp.rule->describe() : std::string("its rule");
    if (!expert && sp.calibrator.is_awq() && sp.site->role != Role::Attention)
      throw Error(sp.site->name + " (" + role_name(sp.site->role) + "): " + rule +
                  " uses calibrator awq, which covers routed experts and attention; give this site's rule calibrator max, mse or gptq");
    if (!expert && hessians->version() < 2)
      throw Error(sp.site->name + " (" + role_name(sp.site->role) + "): " + rule + " uses calibrator " + sp.calibrator.method + ", but " + hessians->path() +
                  " (version 1) holds routed experts' Hessians only; re-run moeq calibrate --gptq-hessians");
    sp.calibrator.hessians = hessians;
  }
}

std::shared_ptr<const HessianFile> attach_hessians_for(Plan& plan, const std::string& calib_path,
                                                       const std::string& model_fingerprint) {
  if (!plan_uses_gptq(plan)) return nullptr;
  if (calib_path.empty())
    throw Error("the recipe uses calibrator gptq or awq, which needs the Hessians from calibration: pass --calib CALIB.h5 "
                "(made by moeq calibrate --gptq-hessians, which writes CALIB.hessians.safetensors beside it)");
  auto h = HessianFile::open(hessian_path_for(calib_path), model_fingerprint);
  attach_hessians(plan, h);
  return h;
}

namespace {

at::Tensor own_amax(const at::Tensor& w3) { return w3.to(at::kFloat).abs().amax({1, 2}); }

// Hessian bytes per gptq_quantize_chunked call (see there). A Qwen3-30B-A3B layer's gate_up
// Hessians are 128 x 2048 x 2048 float32 (2.1 GB); in one call their six copies were part of
// what got INT4 GPTQ killed on a 24 GiB host (bench/gptq_bench.sh, MOEQ_DEVICE=cpu). On the GPU
// 4 GiB keeps such a layer in one call (the column loop is launch-bound: fewer calls, faster).
int64_t gptq_chunk_bytes(const at::Device& d) { return d.is_cuda() ? (int64_t{4} << 30) : (int64_t{256} << 20); }

// A batch's Hessians [E, in, in] and rows [E]. Routed experts: their layer's stack (one load per
// layer and input, cached in `layer_h`: gate and up share). Other sites: their linear's
// Hessian; a site whose input the calibration forward did not report gets the identity, 0 rows,
// and `missing` (plain rounding, listed).
struct BatchHessians {
  at::Tensor h, tokens;
  std::vector<bool> missing;
};

BatchHessians batch_hessians(const SiteBatch& b, const HessianFile& hf, int64_t in,
                             std::map<std::string, std::pair<at::Tensor, at::Tensor>>& layer_h) {
  const Site& s0 = *b.sites[0]->site;
  BatchHessians r;
  if (s0.role == Role::Expert && s0.expert >= 0) {
    const std::string input = s0.proj == "down" ? "down" : "gate_up";
    auto it = layer_h.find(input);
    if (it == layer_h.end())
      it = layer_h.emplace(input, std::make_pair(hf.hessian(s0.layer, input), hf.tokens(s0.layer, input))).first;
    const at::Tensor& H_all = it->second.first;
    std::vector<int64_t> experts;
    for (const SitePlan* sp : b.sites) experts.push_back(sp->site->expert);
    for (int64_t e : experts)
      if (e < 0 || e >= H_all.size(0))
        throw Error(hf.path() + ": layer " + std::to_string(s0.layer) + " " + input + " has Hessians for " +
                    std::to_string(H_all.size(0)) + " experts, the plan has expert " + std::to_string(e));
    if (H_all.size(1) != in)
      throw Error(hf.path() + ": layer " + std::to_string(s0.layer) + " " + input + " Hessians are " +
                  std::to_string(H_all.size(1)) + " x " + std::to_string(H_all.size(2)) + ", the weights " + s0.name +
                  " have " + std::to_string(in) + " inputs");
    // A batch of every expert in order (the usual one) reads the layer's stack without a copy:
    // for Qwen3-30B-A3B's gate_up that stack is 128 x 2048 x 2048 float32, 2.1 GB.
    bool all_in_order = static_cast<int64_t>(experts.size()) == H_all.size(0);
    for (size_t i = 0; all_in_order && i < experts.size(); ++i) all_in_order = experts[i] == static_cast<int64_t>(i);
    const at::Tensor idx = at::tensor(experts, at::kLong);
    r.h = all_in_order ? H_all : H_all.index_select(0, idx);
    r.tokens = it->second.second.index_select(0, idx);
    r.missing.assign(experts.size(), false);
    return r;
  }
  std::vector<at::Tensor> hs;
  std::vector<int64_t> n;
  for (const SitePlan* sp : b.sites) {
    const std::string& name = sp->site->name;
    const bool have = hf.has_linear(name);
    at::Tensor h = have ? hf.linear_hessian(name) : at::eye(in, at::kFloat);
    if (h.size(0) != in)
      throw Error(hf.path() + ": the Hessian of " + name + " is " + std::to_string(h.size(0)) + " x " + std::to_string(h.size(1)) +
                  ", the weights have " + std::to_string(in) + " inputs");
    hs.push_back(h);
    n.push_back(have ? hf.linear_tokens(name) : 0);
    r.missing.push_back(!have);
  }
  r.h = at::stack(hs);
  r.tokens = at::tensor(n, at::kLong);
  return r;
}

// A batch quantized AWQ-folded (gptq's `awq:`, or a reader of a folded norm) sees the input
// x / s, whose Hessian is S^-1 H S^-1 (calib/calibrators/awq_fold.h awq_input_scales).
at::Tensor awq_folded_hessians(const SiteBatch& b, const at::Tensor& H) {
  std::vector<at::Tensor> per;
  bool any = false;
  for (size_t i = 0; i < b.sites.size(); ++i) {
    const SitePlan& sp = *b.sites[i];
    const at::Tensor s = sp.calibrator.awq ? awq_input_scales(*sp.calibrator.awq, *sp.site) : at::Tensor();
    at::Tensor h = H.select(0, static_cast<int64_t>(i));
    if (s.defined()) {
      const at::Tensor inv = 1.0 / s.to(h.device()).to(at::kFloat);
      h = h * inv.unsqueeze(0) * inv.unsqueeze(1);
      any = true;
    }
    per.push_back(h);
  }
  return any ? at::stack(per) : H;
}

}  // namespace

std::vector<QuantizedTensor> gptq_quantize_job(const std::vector<SiteBatch>& job, const std::vector<at::Tensor>& stacks,
                                               const std::optional<at::Tensor>& amax) {
  const SitePlan& first = *job[0].sites[0];
  const WeightCalibrator& cal = first.calibrator;
  if (!cal.hessians)
    throw Error(first.site->name + ": calibrator gptq has no Hessians (pass --calib CALIB.h5 made by moeq calibrate "
                "--gptq-hessians)");
  const QuantFormat& fmt = format_by_name(first.format);
  const FormatTraits traits = fmt.traits();
  const bool nvfp4 = traits.kind == ElementKind::Float;  // the E2M1 grid under FP8 block scales, else integers
  if (!traits.gptq)
    throw Error(first.site->name + ": calibrator gptq does not cover format " + first.format);
  if (!nvfp4 && !first.params.symmetric)
    throw Error(first.site->name + ": calibrator gptq supports symmetric " + first.format +
                " only (asymmetric zero points are not implemented); set symmetric: true or calibrator: max");
  const int bits = traits.bits;
  const double qmax = nvfp4 ? 0 : (1 << (bits - 1)) - 1, qmin = nvfp4 ? 0 : -(1 << (bits - 1));
  GptqOptions go{cal.gptq_block_size, cal.gptq_dampening, cal.gptq_act_order};
  std::map<std::string, std::pair<at::Tensor, at::Tensor>> layer_h;  // input -> (H, tokens): gate and up share
  std::vector<QuantizedTensor> out;
  for (size_t j = 0; j < job.size(); ++j) {
    const SiteBatch& b = job[j];
    const Site& s0 = *b.sites[0]->site;
    const bool was_2d = stacks[j].dim() == 2;
    const at::Tensor w3 = was_2d ? stacks[j].unsqueeze(0) : stacks[j];
    const int64_t E = w3.size(0), in = w3.size(2);
    const BatchHessians bh = batch_hessians(b, *cal.hessians, in, layer_h);
    const at::Tensor H = awq_folded_hessians(b, bh.h);  // on the host; each chunk goes to the device in turn
    const at::Tensor tokens = bh.tokens;
    const bool expert = s0.role == Role::Expert && s0.expert >= 0;
    // The plain path's scales, from the original weights.
    const at::Tensor a = amax ? *amax : own_amax(w3);
    const QuantizedTensor q0 = nvfp4 ? fmt.quantize(stacks[j], first.params, a.reshape(was_2d ? at::IntArrayRef{} : at::IntArrayRef{E}))
                                     : fmt.quantize(stacks[j], first.params);
    at::Tensor block = q0.parts.at("weight_scale");
    if (cal.gptq_observer_mse && !nvfp4) {
      const int64_t group = in / block.size(-1);
      block = int_mse_group_scales(w3, group, qmin, qmax).to(block.scalar_type());
      if (was_2d) block = block.squeeze(0);
    }
    const at::Tensor block3 = was_2d ? block.unsqueeze(0) : block;
    at::Tensor eff;
    if (nvfp4) {
      const at::Tensor gs = q0.parts.at("weight_scale_2").to(at::kFloat).reshape({E, 1, 1});
      eff = (block3.to(at::kFloat) * gs).repeat_interleave(in / block3.size(2), -1);
    } else {
      eff = block3.to(at::kFloat).repeat_interleave(in / block3.size(2), -1);
    }
    const GptqResult r = gptq_quantize_chunked(w3, H, eff, nvfp4 ? GptqGrid::E2M1 : GptqGrid::Int, go, gptq_chunk_bytes(w3.device()), qmin, qmax);
    // Fallbacks: too few tokens, or no positive definite Hessian.
    const at::Tensor few = tokens < cal.gptq_min_tokens;
    const at::Tensor fallback = (few | r.identity.to(at::kCPU)).to(w3.device());
    const at::Tensor wq = at::where(fallback.view({E, 1, 1}), w3.to(at::kFloat), r.q);
    const auto tk = tokens.contiguous();
    const auto fb = fallback.to(at::kCPU).contiguous();
    const auto idn = r.identity.to(at::kCPU).contiguous();
    for (int64_t e = 0; e < E; ++e) {
      if (!fb.data_ptr<bool>()[e]) continue;
      const int64_t n = tk.data_ptr<int64_t>()[e];
      std::string why;
      if (bh.missing[e])
        why = "no Hessian in " + cal.hessians->path() + " (the calibration forward does not report this linear's input)";
      else if (idn.data_ptr<bool>()[e] && n >= cal.gptq_min_tokens)
        why = "Hessian not positive definite after damping";
      else
        why = std::to_string(n) + (expert ? " routed" : "") + " calibration tokens < min_tokens " + std::to_string(cal.gptq_min_tokens);
      cal.hessians->note_fallback(b.sites[e]->site->name + ": " + why + ": plain " + first.format + " rounding");
    }
    const at::Tensor wq_in = was_2d ? wq.squeeze(0) : wq;
    QuantizedTensor q = nvfp4 ? fmt.quantize_with_block_scales(wq_in, first.params, a.reshape(was_2d ? at::IntArrayRef{} : at::IntArrayRef{E}),
                                                               block.view(at::kByte))
                              : fmt.quantize_with_block_scales(wq_in, first.params, at::Tensor(), block);
    // The bytes must decode to exactly the weights GPTQ chose (its grid is the format's).
    const at::Tensor deq = fmt.dequantize(q, at::kFloat);
    const at::Tensor deq3 = was_2d ? deq.unsqueeze(0) : deq;
    const at::Tensor keep = fallback.logical_not().view({E, 1, 1});
    if (!at::where(keep, deq3 == r.q, at::ones_like(deq3, at::kBool)).all().item<bool>())
      throw Error(s0.name + ": the " + first.format + " bytes of the GPTQ weights do not decode to them (internal error)");
    q.orig_dtype = stacks[j].scalar_type();
    out.push_back(std::move(q));
  }
  return out;
}

}  // namespace moeq
