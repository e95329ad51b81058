#pragma once
// How planned sites are grouped for quantization, shared by `moeq quantize` and
// `moeq compare` so that compare measures exactly what an export would hold: the same
// projection of every expert of a layer is one [E, out, in] stack, and the members of a
// fusion group (model/fusion.h: q/k/v, gate/up, ... as the plugin declares) share their
// per-tensor amax (vLLM fuses them into one linear with one scale).
#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "recipe/recipe.h"
#include "recipe/site_batch.h"

namespace moeq {

// The quantized sites of a plan as jobs in plan order: each job is one batch, or the batches
// of one fusion group (same layer, experts, format and calibrator) whose per-tensor scale is
// shared.
std::vector<std::vector<SiteBatch>> plan_jobs(const Plan& plan);

// The batch's weights as one tensor on `dev`: [out, in] for one site, else [E, out, in]
// (a quantized source decoded on a CUDA `dev` from its uploaded bytes: decode_on below).
// Errors name the site being read (tensor/site_errors.h), as in gather_stack.
at::Tensor load_stack(const Checkpoint& ck, const SiteBatch& b, const at::Device& dev);

// The same tensor in host memory, gathered from the checkpoint by several threads;
// pinned = page-locked (for asynchronous copies to a CUDA device).
at::Tensor gather_stack(const Checkpoint& ck, const SiteBatch& b, bool pinned);

// A batch's weights gathered for the device (quantize --device cuda): a batch of quantized-source
// sites (FP8 block, MXFP4) whose views differ only in tensor and expert keeps its stored bytes,
// stacked (codes [n, ..], scales [n, ..]), to be uploaded and decoded on the device; any
// other batch holds gather_stack's decoded tensor. decode_on gives gather_stack's values
// (the CUDA decode kernels give the CPU's bytes), on `dev`.
struct GatheredStack {
  at::Tensor decoded;        // gather_stack's tensor, or undefined
  at::Tensor codes, scales;  // the stacked source bytes, or undefined
  const SiteBatch* batch = nullptr;
  int64_t source_bytes() const;  // codes + scales (0 for a decoded batch)
};
// Whether the batch's sites are quantized sources that can be gathered undecoded.
bool gathers_source_bytes(const SiteBatch& b);
GatheredStack gather_for_device(const Checkpoint& ck, const SiteBatch& b, bool pinned);
at::Tensor decode_on(const GatheredStack& g, const at::Device& dev);

// The amax every stack of a fusion group uses (max over them, per expert), for formats
// with a per-tensor scale; nullopt for single batches and formats without one.
std::optional<at::Tensor> shared_amax(const std::vector<SiteBatch>& job, const std::vector<at::Tensor>& stacks);

// Quantizes a job's stacks (on their device) as the plan says, one result per batch: the
// gate/up pair's shared amax, and the rule's weight calibrator (max, or the MSE search of
// mse_search.h: FP8 pairs search one amax over their joint error; NVFP4 searches block
// scales under the shared global scale).
// A job of MXFP4-source experts quantized to NVFP4 (max calibrator) converts exactly where
// the scales allow (calib/calibrators/mxfp4_to_nvfp4.h); *counts, when given, adds its blocks converted
// exactly / re-quantized.
struct SourceConversionCounts {
  int64_t mxfp4_exact_blocks = 0, mxfp4_requantized_blocks = 0;
};
// An error names the site (tensor/site_errors.h): when the job's one call fails, each of
// its sites is quantized alone to find the one that fails by itself.
std::vector<QuantizedTensor> quantize_job(const Checkpoint& ck, const std::vector<SiteBatch>& job,
                                          const std::vector<at::Tensor>& stacks, SourceConversionCounts* counts = nullptr);

}  // namespace moeq
