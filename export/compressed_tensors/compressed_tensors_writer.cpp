// compressed-tensors export, the checkpoint layout llm-compressor writes and vLLM loads as
// quant_method "compressed-tensors" (compressed-tensors 0.20.0). Per quantized linear
// (experts one module per expert):
//   int4/int8 (pack-quantized): weight_packed I32, weight_scale (weight dtype),
//     weight_zero_point I32 (asymmetric), weight_shape I64 [2] -- moeq's parts as they are
//   nvfp4 (nvfp4-pack-quantized): weight_packed U8, weight_scale F8_E4M3,
//     weight_global_scale F32 [1] = 1 / weight_scale_2 (compressed-tensors divides the block
//     scale by the global scale where ModelOpt multiplies), input_global_scale = (448 * 6) / amax
//   mxfp4 (mxfp4-pack-quantized): weight_packed U8, weight_scale U8 (E8M0)
//   fp8 (naive-quantized weight-only, float-quantized with activations): weight F8_E4M3,
//     weight_scale F32 [1] or [out, 1], input_scale F32 [1]
// Scales that llm-compressor stores in the weight dtype (fp8 weight_scale) stay fp32 here
// so that the export decodes to exactly what moeq quantized; loaders cast them.
#include <map>
#include <set>

#include "core/error.h"
#include "calib/calibrators/input_scales.h"
#include "export/compressed_tensors/compressed_tensors_layout.h"
#include "export/compressed_tensors/ct_scheme.h"
#include "export/writer.h"

namespace moeq {
namespace {

float scalar_of(const at::Tensor& t) { return t.to(at::kFloat).reshape({-1})[0].item<float>(); }

class CompressedTensorsWriter : public ExportWriter {
 public:
  std::string name() const override { return "compressed-tensors"; }

  void check(const SitePlan& p) const override {
    if (p.site->role == Role::Embedding)
      throw Error("export compressed-tensors: site " + p.site->name + " is an embedding; moeq writes quantized linears only");
    try {
      ct_scheme_for(p.format, p.params, p.input_quant);
    } catch (const Error& e) {
      throw Error("export compressed-tensors: site " + p.site->name + ": " + e.what());
    }
  }

  uint64_t write(const QuantizedSite& s, TensorSink& out) const override {
    const std::string& f = s.q->format;
    const std::string m = s.site->module;
    uint64_t bytes = 0;
    auto put = [&](const std::string& suffix, const at::Tensor& t) {
      out.add(m + "." + suffix, t);
      bytes += t.nbytes();
    };
    auto reciprocal = [](float v) { return at::full({1}, 1.0f / v, at::kFloat); };  // IEEE fp32, as torch's 1 / t
    const CtFamily family = ct_family(f);
    if (family == CtFamily::PackedInt) {
      for (const char* p : {"weight_packed", "weight_scale", "weight_shape"}) put(p, part_of(s, p));
      if (s.q->parts.count("weight_zero_point")) put("weight_zero_point", part_of(s, "weight_zero_point"));
    } else if (family == CtFamily::Nvfp4Pack) {
      put("weight_packed", part_of(s, "weight"));
      put("weight_scale", part_of(s, "weight_scale"));
      put("weight_global_scale", reciprocal(scalar_of(part_of(s, "weight_scale_2"))));
      // compressed-tensors computes (448 * 6) / amax, which differs from 1 / input_scale in the last bit.
      if (s.input_amax) put("input_global_scale", at::full({1}, input_global_scale_from_amax(*s.input_amax), at::kFloat));
      else if (s.input_scale) put("input_global_scale", reciprocal(*s.input_scale));
    } else if (family == CtFamily::Mxfp4Pack) {
      put("weight_packed", part_of(s, "weight"));
      put("weight_scale", part_of(s, "weight_scale"));
    } else if (family == CtFamily::Float8) {
      put("weight", part_of(s, "weight"));
      const at::Tensor sc = part_of(s, "weight_scale").to(at::kFloat);
      put("weight_scale", s.q->params.granularity == "channel" ? sc : sc.reshape({1}));
      if (s.input_scale) put("input_scale", at::full({1}, *s.input_scale, at::kFloat));
    } else {
      throw Error("export compressed-tensors: no layout for format " + f + " (site " + s.site->name + ")");
    }
    return bytes;
  }

  void finish(const std::string&, nlohmann::json& config, const Plan& plan, const Recipe&) const override {
    struct Group {
      CtScheme scheme;
      std::vector<std::string> modules;
    };
    std::vector<Group> groups;
    std::map<std::string, size_t> group_of_key;
    std::map<std::string, std::string> owner;  // module -> group key ("" when unquantized)
    std::vector<std::string> ignore;
    for (const auto& sp : plan.sites) {
      const std::string& m = sp.site->module;
      if (!sp.quantize) {
        // Every unquantized site, embeddings included: llm-compressor lists only linears,
        // but compressed-tensors' model-free dequantizer would take an fp8 group's
        // `Linear` target to mean every `*.weight` not ignored.
        if (sp.site->role != Role::Norm) ignore.push_back(m);
        owner[m] = "";
        continue;
      }
      CtScheme s = ct_scheme_for(sp.format, sp.params, sp.input_quant);
      const std::string key = s.format + s.weights.dump() + s.input.dump();
      if (!group_of_key.count(key)) {
        group_of_key[key] = groups.size();
        groups.push_back({s, {}});
      }
      groups[group_of_key[key]].modules.push_back(m);
      owner[m] = key;
    }
    if (groups.empty()) throw Error("export compressed-tensors: the recipe quantizes no site");
    std::map<std::string, std::vector<std::string>> modules_of_pattern;
    for (const auto& [m, key] : owner) modules_of_pattern[ct_module_regex(m)].push_back(m);

    nlohmann::json config_groups = nlohmann::json::object();
    std::set<std::string> formats;
    for (size_t g = 0; g < groups.size(); ++g) {
      const Group& grp = groups[g];
      const std::string key = grp.scheme.format + grp.scheme.weights.dump() + grp.scheme.input.dump();
      std::vector<std::string> targets;
      if (groups.size() == 1) {
        targets = {"Linear"};  // as llm-compressor writes a single scheme; `ignore` names the rest
      } else {
        // One regex per module shape (layer and expert indices generalized) when it matches
        // this group's modules only; the exact module names otherwise.
        std::set<std::string> seen;
        for (const auto& m : grp.modules) {
          const std::string pat = ct_module_regex(m);
          if (!seen.insert(pat).second) continue;
          bool alone = true;
          for (const auto& other : modules_of_pattern[pat]) alone = alone && owner[other] == key;
          if (alone) {
            targets.push_back(pat);
          } else {
            for (const auto& other : modules_of_pattern[pat])
              if (owner[other] == key) targets.push_back(other);
          }
        }
      }
      formats.insert(grp.scheme.format);
      config_groups["group_" + std::to_string(g)] = {{"format", grp.scheme.format},
                                                     {"input_activations", grp.scheme.input},
                                                     {"output_activations", nullptr},
                                                     {"targets", targets},
                                                     {"weights", grp.scheme.weights}};
    }
    config["quantization_config"] = {
        {"config_groups", config_groups},
        {"format", formats.size() == 1 ? *formats.begin() : std::string("mixed-precision")},
        {"global_compression_ratio", nullptr},
        {"ignore", ignore},
        {"kv_cache_scheme", nullptr},
        {"moe_sparsity_config", nullptr},
        {"quant_method", "compressed-tensors"},
        {"quantization_status", "compressed"},
        {"sparsity_config", nlohmann::json::object()},
        {"transform_config", nlohmann::json::object()},
        {"version", kCtVersion}};
  }
};

}  // namespace

std::shared_ptr<const ExportWriter> make_compressed_tensors_writer() { return std::make_shared<CompressedTensorsWriter>(); }

}  // namespace moeq
