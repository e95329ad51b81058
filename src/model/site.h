#pragma once
// Canonical sites: every 2D weight moeq may quantize, named independently of the
// checkpoint (`layers.3.experts.17.gate`), with a zero-copy recipe for its [out, in] view
// inside a stored tensor (which may be a fused 3D expert stack).
#include <cstdint>
#include <string>
#include <vector>

namespace moeq {

// Mtp: a multi-token-prediction (next-n) layer, not part of the trunk: every tensor of
// `model.layers.{L >= num_hidden_layers}` (DeepSeek-V3, GLM-4.5) or of a top-level `mtp.*`
// tree (Qwen3-Next, Qwen3.5). Tower: a vision/audio encoder of a multimodal checkpoint.
// Both are protected (copied through unless a rule names the role); the forward skips them.
enum class Role { Attention, DenseMlp, Expert, SharedExpert, Router, Embedding, LmHead, Norm, Mtp, Tower, Other };
const char* role_name(Role r);
constexpr Role kAllRoles[] = {Role::Attention, Role::DenseMlp, Role::Expert, Role::SharedExpert, Role::Router,
                              Role::Embedding, Role::LmHead, Role::Norm, Role::Mtp, Role::Tower,
                              Role::Other};

// How a weight is stored on disk. A quantized source is decoded on read (tensor/source_dequant.h):
//  Fp8Block: `X.weight` F8_E4M3 [.., out, in] and `X.weight_scale_inv` [.., ceil(out/bm),
//            ceil(in/bn)] (F32 or BF16): w = fp8 * scale_inv over [bm, bn] blocks (DeepSeek-V3,
//            Qwen3-FP8; config.json quantization_config.weight_block_size);
//  Mxfp4:    `X_blocks` U8 [E, out, in/32, 16] (E2M1 pairs, low nibble first) and `X_scales`
//            U8 E8M0 [E, out, in/32]: w = e2m1 * 2^(scale - 127) (gpt-oss).
enum class SourceFormat { Plain, Fp8Block, Mxfp4 };
const char* source_format_name(SourceFormat f);  // "plain", "fp8-block", "mxfp4" (format-name-ok: source formats)

// How the [out, in] matrix of a site sits in its stored tensor:
// t = stored; if expert >= 0: t = t[expert]; if transpose: t = t^T;
// t = t[row_start : row_start + rows * row_step : row_step, :]
// (for a quantized source, t is the decoded tensor: `tensor` holds the codes, `scale` the scales)
struct WeightView {
  std::string tensor;
  SourceFormat source = SourceFormat::Plain;
  std::string scale;        // the scale tensor of a quantized source (claimed with the weight)
  int64_t block_rows = 0;   // Fp8Block: weight_block_size
  int64_t block_cols = 0;
  int64_t expert = -1;
  bool transpose = false;
  int64_t row_start = 0;
  int64_t row_step = 1;
  int64_t rows = 0;
  int64_t cols = 0;
};

struct Site {
  std::string name;     // canonical, e.g. layers.3.experts.17.gate
  Role role = Role::Other;
  int64_t layer = -1;   // -1 outside decoder layers
  int64_t expert = -1;  // -1 for non-expert sites
  std::string proj;     // gate, up, down, q, k, v, o, router, ...
  WeightView view;      // out = view.rows, in = view.cols
  // The module name a per-linear export uses (`model.layers.0.mlp.experts.3.gate_proj`):
  // the stored name without `.weight`, or for a fused stack `<stack parent>.<E>.<proj>_proj`.
  std::string module;
  bool fused = false;   // the stored tensor holds several sites (3D expert stack)
};

// A stored tensor that is not a 2D linear weight (norms, biases, router extras, ...),
// claimed by a rule so it is never dropped.
struct AuxTensor {
  std::string tensor;
  Role role = Role::Other;
  int64_t layer = -1;
  std::string what;  // e.g. "norm weight", "expert bias"
};

struct SiteMap {
  std::vector<Site> sites;              // ordered by layer, role, expert, projection
  std::vector<AuxTensor> aux;
  // Scale tensors of quantized sources (`*.weight_scale_inv`, `*_scales`): claimed with their
  // weight (WeightView::scale), decoded with it, never copied through on their own.
  std::vector<AuxTensor> source_scales;
  std::vector<std::string> unclaimed;   // tensors that no rule of the plugin claims
  std::string expert_layout;            // "fused 3D", "per-expert 2D", "mixed", or "none"
};

}  // namespace moeq
