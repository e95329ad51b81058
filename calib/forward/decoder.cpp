#include "calib/forward/decoder.h"

#include "core/error.h"

namespace moeq::fwd {

at::Tensor DecoderFamily::embed(const LayerWeights& globals, const at::Tensor& ids) const {
  return at::embedding(globals.w("embed_tokens"), ids);
}

at::Tensor standard_head(const LayerRun& run, const at::Tensor& h, double eps, RmsStyle style, double softcap) {
  at::Tensor x = rms_norm(h, run.w.a("norm.weight"), eps, style);
  const bool own_head = run.w.has("lm_head");
  if (own_head) run.observe({"lm_head"}, x);
  if (!run.want_logits) return at::Tensor();
  at::Tensor logits = at::linear(own_head ? run.input("lm_head", x) : x, run.w.w(own_head ? "lm_head" : "embed_tokens")).to(at::kFloat);
  if (softcap > 0) logits = at::tanh(logits / softcap) * softcap;
  return logits;
}

std::unique_ptr<DecoderFamily> assemble_decoder(const DecoderSpec& spec, const ModelConfig& config) {
  switch (spec.layout) {
    case DecoderLayout::PreNorm: return make_pre_norm_decoder(spec, config);
    case DecoderLayout::Sandwich: return make_sandwich_decoder(spec, config);
    case DecoderLayout::Hybrid: return make_hybrid_decoder(spec, config);
  }
  throw Error("native forward: unknown decoder layout of " + spec.family);
}

}  // namespace moeq::fwd
