#pragma once
// Where the AWQ scales of the routed experts' gate/up input fold (docs/awq.md): the norm before
// the MoE and every other reader of its output, as the family's plugin declares them
// (model/decoder_spec.h FeedForwardSpec::expert_input). The folded source is the source with
//   norm w -> w / s (or (1 + w) / s - 1),  every reader's columns x s  (router, shared experts),
//   routed experts: gate and up columns x s_gate_up, up rows / s_down, down columns x s_down;
// unquantized, it computes the source's function (tests/quant/test_awq_fold.cpp, every family).
#include <ATen/ATen.h>

#include <map>
#include <set>
#include <string>

#include "io/checkpoint.h"
#include "model/model.h"
#include "model/site.h"

namespace moeq {

class AwqScales;

struct AwqNormFold {
  std::string norm_tensor;        // stored name of the norm's weight
  bool one_plus = false;          // a (1 + w) norm
  std::set<std::string> readers;  // non-expert sites that read its output (columns x s)
};

// The fold of `layer`'s expert input. Throws moeq::Error, one line naming the family, the layer
// and why, when the family declares no exact fold or the declared norm is not in the checkpoint.
AwqNormFold awq_norm_fold(const Model& model, int64_t layer);

// The scales that divide `site`'s input in the folded model ([in] float32 CPU), undefined when none.
at::Tensor awq_input_scales(const AwqScales& a, const Site& site);

// The stored tensors the fold changes that are not quantized sites of an export: the norms, and
// the plain 2D tensors of the reader sites, each folded and cast back to its source dtype (the
// bytes the export writes in place of the copy-through tensor). Throws naming the site when a
// reader is stored in a way moeq does not fold (fused, transposed or a quantized source).
std::map<std::string, at::Tensor> awq_folded_tensors(const AwqScales& a, const Checkpoint& ck, const SiteMap& sites);

}  // namespace moeq
