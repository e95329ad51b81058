#pragma once
// Zero-copy at::Tensor views over checkpoint tensors. The views alias the read-only
// mapping (writing into them faults) and keep the mapping alive while they exist.
#include <ATen/ATen.h>

#include "io/checkpoint.h"
#include "model/site.h"

namespace moeq {

at::ScalarType to_scalar_type(DType t);
// The whole stored tensor, with its stored shape and dtype.
at::Tensor tensor_view(const Checkpoint& ckpt, const std::string& name);
// The [out, in] weight of a site (a strided view into a fused tensor where needed).
// Quantized sources (FP8 block, MXFP4; model/source_quant.h) are decoded to bf16 on read.
at::Tensor site_weight(const Checkpoint& ckpt, const Site& site);
// The dtype site_weight returns, without reading the weight.
at::ScalarType site_dtype(const Checkpoint& ckpt, const Site& site);

}  // namespace moeq
