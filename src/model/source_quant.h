#pragma once
// Quantized sources: checkpoints published with FP8-block weights (`X.weight` F8_E4M3 +
// `X.weight_scale_inv`) or MXFP4 experts (`X_blocks` + `X_scales`). The scale tensors are
// claimed with their weight: map_sites leaves them out of the plugin's rules and records
// them on the site's WeightView, which site_weight (tensor/aten_view.h) decodes on read.
#include <string>
#include <unordered_set>
#include <vector>

#include "io/safetensors.h"
#include "model/config.h"
#include "model/site.h"

namespace moeq {

// True when `name` is the scale partner of another tensor in `names` (claimed with it).
bool is_source_scale(const std::string& name, const std::unordered_set<std::string>& names);

// Marks every site whose stored tensor has a scale partner as an FP8-block or MXFP4 source,
// checks dtypes and shapes against config.json's quantization_config (throws moeq::Error
// naming the tensor), and lists the scale tensors in out->source_scales.
void attach_source_scales(const ModelConfig& config, const std::vector<const TensorInfo*>& tensors,
                          const std::string& where, SiteMap* out);

}  // namespace moeq
