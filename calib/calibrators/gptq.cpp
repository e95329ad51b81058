#include "calib/calibrators/gptq.h"

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.h"

namespace moeq {
namespace {

// |v| rounded to the nearest E2M1 magnitude with the formats' thresholds (formats/e2m1.h:
// ties at 0.25, 1.25, 2.5, 5 go down, at 0.75, 1.75, 3.5 up; saturating at 6).
at::Tensor e2m1_round(const at::Tensor& v) {
  const at::Tensor a = v.abs();
  at::Tensor m = at::zeros_like(a);
  m = at::where(a > 0.25, 0.5, m);
  m = at::where(a >= 0.75, 1.0, m);
  m = at::where(a > 1.25, 1.5, m);
  m = at::where(a >= 1.75, 2.0, m);
  m = at::where(a > 2.5, 3.0, m);
  m = at::where(a >= 3.5, 4.0, m);
  m = at::where(a > 5.0, 6.0, m);
  return at::where(v < 0, m.neg(), m);
}

std::string shape_of(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

}  // namespace

at::Tensor gptq_round(const at::Tensor& v, const at::Tensor& scale, GptqGrid grid, double qmin, double qmax) {
  const at::Tensor x = v / scale;
  if (grid == GptqGrid::E2M1) return e2m1_round(x) * scale;
  return x.round().clamp(qmin, qmax) * scale;
}

GptqResult gptq_quantize(const at::Tensor& w_in, const at::Tensor& h_in, const at::Tensor& scale_in, GptqGrid grid,
                         const GptqOptions& opt, double qmin, double qmax) {
  if (w_in.dim() != 3 || h_in.dim() != 3 || scale_in.sizes() != w_in.sizes() || h_in.size(0) != w_in.size(0) ||
      h_in.size(1) != w_in.size(2) || h_in.size(2) != w_in.size(2))
    throw Error("gptq: weights " + shape_of(w_in) + ", Hessians " + shape_of(h_in) + " and scales " + shape_of(scale_in) +
                " do not fit (expected [E, out, in], [E, in, in], [E, out, in])");
  if (opt.block_size < 1) throw Error("gptq: block_size must be >= 1, got " + std::to_string(opt.block_size));
  const int64_t E = w_in.size(0), rows = w_in.size(1), n = w_in.size(2);
  at::Tensor W = w_in.to(at::kFloat).clone();
  at::Tensor H = h_in.to(at::kFloat).clone();
  at::Tensor S = scale_in.to(at::kFloat).contiguous();
  at::Tensor perm;
  if (opt.act_order) {
    perm = at::argsort(at::diagonal(H, 0, -2, -1), /*stable=*/true, /*dim=*/-1, /*descending=*/true);  // [E, n]
    const at::Tensor pc = perm.unsqueeze(1).expand({E, rows, n});
    W = at::gather(W, 2, pc);
    S = at::gather(S, 2, pc);
    H = at::gather(at::gather(H, 2, perm.unsqueeze(1).expand({E, n, n})), 1, perm.unsqueeze(2).expand({E, n, n}));
  }
  // Dead input channels.
  at::Tensor diag = at::diagonal(H, 0, -2, -1);
  const at::Tensor dead = diag == 0;
  diag.masked_fill_(dead, 1.0);
  W.masked_fill_(dead.unsqueeze(1), 0.0);
  // Damping, then the upper Cholesky factor of the inverse (identity where H is not PD).
  diag.add_((opt.damp * diag.mean(-1)).unsqueeze(-1));
  auto [L, info] = at::linalg_cholesky_ex(H, /*upper=*/false, /*check_errors=*/false);
  const at::Tensor bad = info != 0;
  const at::Tensor eye = at::eye(n, H.options()).expand({E, n, n});
  L = at::where(bad.view({E, 1, 1}), eye, L);
  at::Tensor Hinv = at::linalg_cholesky(at::cholesky_inverse(L), /*upper=*/true);
  Hinv = at::where(bad.view({E, 1, 1}), eye, Hinv);

  for (int64_t i1 = 0; i1 < n; i1 += opt.block_size) {
    const int64_t i2 = std::min(i1 + opt.block_size, n), width = i2 - i1;
    at::Tensor W1 = W.narrow(2, i1, width).clone();
    at::Tensor Q1 = at::zeros_like(W1);
    at::Tensor Err1 = at::zeros_like(W1);
    const at::Tensor Hinv1 = Hinv.narrow(1, i1, width).narrow(2, i1, width);
    for (int64_t i = 0; i < width; ++i) {
      const at::Tensor w = W1.select(2, i);                                   // [E, rows]
      const at::Tensor q = gptq_round(w, S.select(2, i1 + i), grid, qmin, qmax);
      const at::Tensor d = Hinv1.select(1, i).select(1, i).unsqueeze(1);      // [E, 1]
      const at::Tensor err = (w - q) / d;
      Q1.select(2, i).copy_(q);
      Err1.select(2, i).copy_(err);
      W1.narrow(2, i, width - i).sub_(err.unsqueeze(-1) * Hinv1.select(1, i).narrow(1, i, width - i).unsqueeze(1));
    }
    W.narrow(2, i1, width).copy_(Q1);
    if (i2 < n) W.narrow(2, i2, n - i2).sub_(at::bmm(Err1, Hinv.narrow(1, i1, width).narrow(2, i2, n - i2)));
  }
  if (perm.defined()) W = at::gather(W, 2, at::argsort(perm, /*dim=*/int64_t{-1}, /*descending=*/false).unsqueeze(1).expand({E, rows, n}));
  return {W, bad};
}

GptqResult gptq_quantize_chunked(const at::Tensor& w, const at::Tensor& h, const at::Tensor& scale, GptqGrid grid,
                                 const GptqOptions& opt, int64_t chunk_bytes, double qmin, double qmax) {
  if (w.dim() != 3 || h.dim() != 3 || h.size(0) != w.size(0))
    throw Error("gptq: weights " + shape_of(w) + " and Hessians " + shape_of(h) + " do not fit (expected [E, out, in], [E, in, in])");
  const int64_t E = w.size(0), per = std::max<int64_t>(1, h.size(1) * h.size(2) * static_cast<int64_t>(sizeof(float)));
  const int64_t chunk = std::max<int64_t>(1, chunk_bytes / per);
  if (chunk >= E) return gptq_quantize(w, h.to(w.device()), scale, grid, opt, qmin, qmax);
  std::vector<at::Tensor> qs, ids;
  for (int64_t e0 = 0; e0 < E; e0 += chunk) {
    const int64_t n = std::min(chunk, E - e0);
    GptqResult r = gptq_quantize(w.narrow(0, e0, n), h.narrow(0, e0, n).to(w.device()), scale.narrow(0, e0, n), grid, opt, qmin, qmax);
    qs.push_back(std::move(r.q));
    ids.push_back(std::move(r.identity));
  }
  return {at::cat(qs), at::cat(ids)};
}

}  // namespace moeq
