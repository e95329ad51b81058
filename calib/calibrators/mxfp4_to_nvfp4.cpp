#include "calib/calibrators/mxfp4_to_nvfp4.h"

#include "formats/format.h"
#include "tensor/aten_view.h"

namespace moeq {
namespace {

// The E8M0 scale bytes of a batch's sites, [n, rows, in/32] (or [rows, in/32] for one site).
at::Tensor batch_scales(const Checkpoint& ck, const SiteBatch& b) {
  std::vector<at::Tensor> v;
  for (const SitePlan* p : b.sites) {
    const WeightView& w = p->site->view;
    at::Tensor s = tensor_view(ck, w.scale);
    if (w.expert >= 0) s = s.select(0, w.expert);
    v.push_back(s.slice(0, w.row_start, w.row_start + (w.rows - 1) * w.row_step + 1, w.row_step));
  }
  return v.size() == 1 ? v[0].contiguous() : at::stack(v);
}

// The target keeps an MXFP4 source's E2M1 codes where the scales allow (its traits say so).
bool keeps_mxfp4_codes(const std::string& format) {
  const QuantFormat* f = find_format(format);
  return f && f->traits().keeps_mxfp4_codes;
}

}  // namespace

std::optional<Mxfp4ToNvfp4> plan_mxfp4_to_nvfp4(const Checkpoint& ck, const std::vector<SiteBatch>& job,
                                                const std::vector<at::Tensor>& stacks) {
  for (const SiteBatch& b : job)
    for (const SitePlan* p : b.sites)
      if (!keeps_mxfp4_codes(p->format) || p->site->view.source != SourceFormat::Mxfp4 || p->calibrator.is_mse())
        return std::nullopt;
  const at::Device dev = stacks[0].device();
  const bool one = stacks[0].dim() == 2;
  std::vector<at::Tensor> k, nonzero;  // per batch: block exponents [E, R, G], block holds a non-zero
  for (size_t j = 0; j < job.size(); ++j) {
    const at::Tensor x = (one ? stacks[j].unsqueeze(0) : stacks[j]).to(at::kFloat);
    const int64_t E = x.size(0), R = x.size(1), C = x.size(2);
    at::Tensor s = batch_scales(ck, job[j]).to(dev).to(at::kInt) - 127;
    k.push_back(one ? s.unsqueeze(0) : s);
    nonzero.push_back(x.view({E, R, C / 32, 32}).abs().amax(-1) > 0);
  }
  // m per expert: kmax - 8 over the expert's non-zero blocks of every batch (gate and up).
  at::Tensor kmax;
  for (size_t j = 0; j < job.size(); ++j) {
    const at::Tensor km = at::where(nonzero[j], k[j], -1000).amax({1, 2});
    kmax = kmax.defined() ? at::maximum(kmax, km) : km;
  }
  const at::Tensor m = at::where(kmax <= -1000, 0, kmax - 8).clamp(-126, 100);  // 2688 * 2^m stays finite
  const at::Tensor g = at::ldexp(at::ones_like(m, m.options().dtype(at::kFloat)), m);  // 2^m, exact
  Mxfp4ToNvfp4 out;
  out.amax = g * 2688.f;  // nvfp4_global_scale: amax / 2688 == 2^m exactly
  for (size_t j = 0; j < job.size(); ++j) {
    const at::Tensor x = (one ? stacks[j].unsqueeze(0) : stacks[j]).to(at::kFloat);
    const int64_t E = x.size(0), R = x.size(1), C = x.size(2);
    const at::Tensor d = k[j] - m.view({E, 1, 1});
    const at::Tensor exact = (d >= -9).logical_and(d <= 8).logical_or(nonzero[j].logical_not());
    const at::Tensor exact_s = at::ldexp(at::ones_like(d, d.options().dtype(at::kFloat)), d.clamp(-9, 8))
                                   .to(at::kFloat8_e4m3fn).view(at::kByte).repeat_interleave(2, -1);
    // ModelOpt's block rule (formats/nvfp4.h) for the blocks that do not fit.
    at::Tensor re = x.view({E, R, C / 16, 16}).abs().amax(-1) / (g.view({E, 1, 1}) * 6.f);
    re = at::where(re == 0, 1.f, re).clamp(0.001953125, 448.0).to(at::kFloat8_e4m3fn);
    at::Tensor bs = at::where(exact.repeat_interleave(2, -1), exact_s, re.view(at::kByte));
    out.block_scales.push_back(one ? bs.squeeze(0) : bs);
    const int64_t n_exact = exact.sum().item<int64_t>();
    out.exact_blocks += n_exact;
    out.requantized_blocks += exact.numel() - n_exact;
  }
  if (one) out.amax = out.amax.squeeze(0);
  return out;
}

}  // namespace moeq
