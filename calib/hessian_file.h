#pragma once
// GPTQ Hessians: the side file `moeq calibrate --gptq-hessians` writes beside calib.h5
// (CALIB.hessians.safetensors), read by `quantize` / `compare` for `calibrator: gptq` / `awq`.
// Per MoE layer L and expert input ("gate_up": the input gate and up share; "down"):
//   layers.L.experts.INPUT.hessian  F32 [E, in, in]  H = 2/n X^T X over the n rows routed to each expert
//                                   (llm-compressor's normalization; zero for an expert with no row)
//   layers.L.experts.INPUT.tokens   I64 [E]          n per expert
// Version 2 also holds, per input of a non-expert linear the forward reports (attention q/k/v
// share one, o has its own; shared experts, dense MLPs, lm_head):
//   linears.SITE.hessian            F32 [in, in]     H = 2/n X^T X over all n rows (SITE: the first
//                                                    site reported with that input)
//   linears.SITE.tokens             I64 [1]          n
// metadata: format "moeq-gptq-hessians", model_fingerprint (the model's, as in calib.h5), version
// ("2"; absent in version 1 files, which hold experts only), linear_inputs (version 2: a JSON
// object, each non-expert site name -> the SITE whose linears.SITE tensors it reads).
// The file is memory-mapped; hessian() copies one layer's stack out, so quantize holds one
// layer's Hessians at a time.
#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace moeq {

// CALIB.h5 -> CALIB.hessians.safetensors (the extension replaced; appended when there is none).
std::string hessian_path_for(const std::string& calib_path);
std::string hessian_tensor_name(int64_t layer, const std::string& input, const std::string& what);
std::string hessian_linear_tensor_name(const std::string& site, const std::string& what);
constexpr int kHessianFileVersion = 2;

class HessianFile {
 public:
  // Throws moeq::Error naming the file when it is missing (with the command that makes it), is
  // not a Hessian file, or was made for another model (fingerprint).
  static std::shared_ptr<const HessianFile> open(const std::string& path, const std::string& model_fingerprint);
  const std::string& path() const { return file_->path(); }
  // [E, in, in] float32 and [E] int64 on the CPU; throws naming the file and tensor when absent.
  at::Tensor hessian(int64_t layer, const std::string& input) const;
  at::Tensor tokens(int64_t layer, const std::string& input) const;
  // 1: routed experts only (files made before non-expert Hessians); 2: also non-expert linears.
  int version() const { return version_; }
  // Non-expert sites (version 2): whether the calibration forward reported the site's input, its
  // Hessian [in, in] float32 and the rows n (throw naming the file and site when absent).
  bool has_linear(const std::string& site) const { return linear_inputs_.count(site) > 0; }
  at::Tensor linear_hessian(const std::string& site) const;
  int64_t linear_tokens(const std::string& site) const;
  // Experts GPTQ left at plain rounding (too few tokens, or H not positive definite), one line
  // each, as the quantize run found them (reports list them).
  void note_fallback(const std::string& line) const;
  std::vector<std::string> fallbacks() const;

 private:
  at::Tensor load(const std::string& name, DType want) const;
  const std::string& linear_key(const std::string& site) const;
  std::shared_ptr<SafetensorsFile> file_;
  int version_ = 1;
  std::map<std::string, std::string> linear_inputs_;
  mutable std::mutex mu_;
  mutable std::vector<std::string> fallbacks_;
};

}  // namespace moeq
