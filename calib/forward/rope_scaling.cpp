#include "calib/forward/rope_scaling.h"

#include <algorithm>
#include <cmath>

#include "calib/forward/decoder.h"
#include "core/error.h"

namespace moeq::fwd {
namespace {
const nlohmann::json* rope_params(const ModelConfig& c) {
  for (const auto* j : {&c.text, &c.raw})
    for (const char* key : {"rope_parameters", "rope_scaling"})
      if (j->contains(key) && (*j)[key].is_object()) return &(*j)[key];
  return nullptr;
}
double num(const nlohmann::json& p, const char* key, double fallback) {
  return p.contains(key) && p[key].is_number() ? p[key].get<double>() : fallback;
}
double yarn_mscale(double scale, double mscale) { return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }
}  // namespace

RopeFreqs rope_freqs(const RopeSpec& spec, const ModelConfig& c, const std::string& family) {
  if (spec.kind == RopeSpec::Kind::FromConfig) return rope_freqs(c, spec.dim, family);
  RopeFreqs f;
  f.inv_freq = spec.kind == RopeSpec::Kind::Proportional
                   ? proportional_inv_freq(spec.theta, spec.dim, spec.partial, spec.factor)
                   : default_inv_freq(spec.theta, spec.dim);
  f.type = spec.kind == RopeSpec::Kind::Proportional ? "proportional" : "default";
  return f;
}

RopeFreqs rope_freqs(const ModelConfig& c, int64_t dim, const std::string& family) {
  RopeFreqs f;
  const double theta = rope_theta(c, 10000.0);
  f.inv_freq = default_inv_freq(theta, dim);
  const nlohmann::json* p = rope_params(c);
  if (!p) return f;
  f.type = p->value("rope_type", p->value("type", std::string("default")));
  if (f.type == "default") return f;
  if (f.type != "yarn")
    throw Error("config '" + c.path + "': rope_type '" + f.type + "' is not supported by moeq's native " + family +
                " forward (default, yarn)");
  // YaRN (arXiv 2309.00071), as transformers' _compute_yarn_parameters defines it.
  if (!p->contains("original_max_position_embeddings"))
    throw Error("config '" + c.path + "': YaRN rope parameters lack original_max_position_embeddings");
  const double orig = (*p)["original_max_position_embeddings"].get<double>();
  double factor = num(*p, "factor", 0);
  if (factor == 0) factor = config_double(c, "max_position_embeddings", 0) / orig;
  const double mscale = num(*p, "mscale", 0), mscale_all_dim = num(*p, "mscale_all_dim", 0);
  if (p->contains("attention_factor") && (*p)["attention_factor"].is_number())
    f.attention_factor = (*p)["attention_factor"].get<double>();
  else if (mscale != 0 && mscale_all_dim != 0)
    f.attention_factor = yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim);
  else
    f.attention_factor = yarn_mscale(factor, 1.0);
  if (mscale_all_dim != 0) {
    const double m = yarn_mscale(factor, mscale_all_dim);
    f.softmax_scale_factor = m * m;
  }
  const double beta_fast = num(*p, "beta_fast", 0) != 0 ? num(*p, "beta_fast", 0) : 32.0;
  const double beta_slow = num(*p, "beta_slow", 0) != 0 ? num(*p, "beta_slow", 0) : 1.0;
  const bool truncate = p->contains("truncate") && (*p)["truncate"].is_boolean() ? (*p)["truncate"].get<bool>() : true;
  auto correction_dim = [&](double rotations) {
    return dim * std::log(orig / (rotations * 2 * M_PI)) / (2 * std::log(theta));
  };
  double low = correction_dim(beta_fast), high = correction_dim(beta_slow);
  if (truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;
  at::Tensor ramp = ((at::arange(dim / 2, at::kFloat) - low) / (high - low)).clamp(0, 1);
  at::Tensor extrapolation = 1 - ramp;  // weight of the unscaled frequency
  at::Tensor pos = at::pow(theta, at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim));
  at::Tensor inv_extra = 1.0 / pos, inv_inter = 1.0 / (factor * pos);
  f.inv_freq = inv_inter * (1 - extrapolation) + inv_extra * extrapolation;
  return f;
}

at::Tensor apply_rope_interleaved(const at::Tensor& x, const Rope& r) {
  const int64_t half = r.cos.size(-1) / 2;
  at::Tensor c = r.cos.narrow(-1, 0, half).unsqueeze(1), s = r.sin.narrow(-1, 0, half).unsqueeze(1);
  at::Tensor x1 = x.slice(-1, 0, x.size(-1), 2), x2 = x.slice(-1, 1, x.size(-1), 2);
  return at::cat({x1 * c - x2 * s, x2 * c + x1 * s}, -1);
}

at::Tensor apply_rope_partial(const at::Tensor& x, const Rope& r) {
  const int64_t rd = r.cos.size(-1);
  if (rd == x.size(-1)) return apply_rope(x, r);
  return at::cat({apply_rope(x.narrow(-1, 0, rd), r), x.narrow(-1, rd, x.size(-1) - rd)}, -1);
}

}  // namespace moeq::fwd
