#pragma once
// A quantized-source site's weight in two steps, so the decode can run where the bytes go
// (quantize --device cuda uploads the stored bytes and decodes on the device: app/run/batches.h).
// site_weight (tensor/aten_view.h) is site_source_bytes, then decode_source_bytes.
#include <ATen/ATen.h>

#include <string>

#include "io/checkpoint.h"
#include "model/site.h"

namespace moeq {

// The stored bytes before decoding (views into the mapping): the codes and scales of the
// site's expert (MXFP4: of its rows), as site_weight decodes them.
struct SourceBytes {
  at::Tensor codes, scales;
};
SourceBytes site_source_bytes(const Checkpoint& ckpt, const Site& site);

// Decodes a site's source bytes, or n sites' stacked on a leading dimension (sites whose views
// differ only in tensor and expert), on their device, and applies the rest of the site's view
// (transpose, rows): site_weight's values, [out, in] or [n, out, in] (a strided view).
// `what` names the tensors in errors.
at::Tensor decode_source_bytes(const at::Tensor& codes, const at::Tensor& scales, const Site& site, const std::string& what);

}  // namespace moeq
