#include "calib/calibrators/awq_fold.h"

#include "calib/calibrators/awq_job.h"
#include "calib/calibrators/awq_norm.h"
#include "core/error.h"
#include "tensor/aten_view.h"

namespace moeq {
namespace {

bool ends_with(const std::string& s, const std::string& t) {
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

const AwqScales::Layer* layer_of(const AwqScales& a, int64_t layer) {
  auto it = a.layers.find(layer);
  return it == a.layers.end() ? nullptr : &it->second;
}

const LayerKind& layer_kind(const DecoderSpec& spec, int64_t layer) {
  const std::string kind = spec.layer_types.empty() ? std::string(DecoderSpec::kUniformLayers)
                           : layer >= 0 && layer < static_cast<int64_t>(spec.layer_types.size()) ? spec.layer_types[static_cast<size_t>(layer)]
                                                                                                  : std::string("?");
  auto it = spec.kinds.find(kind);
  if (it == spec.kinds.end())
    throw Error(spec.family + ": layer " + std::to_string(layer) + " has no layer kind in the decoder spec ('" + kind + "')");
  return it->second;
}

DecoderSpec decoder_of(const Model& model, const std::string& where, const std::string& way_out) {
  if (!model.plugin || !model.plugin->decoder)
    throw Error(where + ": family " + (model.plugin ? model.plugin->family : std::string("?")) +
                " has no decoder spec, so moeq does not know where the scales fold; " + way_out);
  return model.plugin->decoder(model.config);
}

// The stored name of a layer-relative tensor key (an aux tensor), "" when the checkpoint has none.
std::string aux_name(const Model& model, int64_t layer, const std::string& key) {
  const std::string suffix = "layers." + std::to_string(layer) + "." + key;
  for (const AuxTensor& x : model.sites.aux)
    if (x.layer == layer && ends_with(x.tensor, suffix)) return x.tensor;
  return "";
}

AwqNormFold resolve(const Model& model, int64_t layer, const NormFold& f, const std::string& where, const std::string& way_out) {
  if (!f.allowed())
    throw Error(where + ": no exact fold for " + model.plugin->family + " (" + f.why_not + "); " + way_out);
  AwqNormFold out;
  out.one_plus = f.one_plus;
  out.norm_tensor = aux_name(model, layer, f.norm);
  if (out.norm_tensor.empty())
    throw Error(where + ": the plugin of " + model.plugin->family + " says " + f.norm + " feeds it, but the checkpoint has no "
                "tensor ...layers." + std::to_string(layer) + "." + f.norm);
  const std::string pre = "layers." + std::to_string(layer) + ".";
  for (const std::string& r : f.readers) {
    if (r.rfind("experts.", 0) == 0) continue;  // the routed experts' gate/up: folded by their own jobs
    for (const Site& s : model.sites.sites)
      if (s.layer == layer && s.role != Role::Expert && s.name == pre + r) out.readers.insert(s.name);
  }
  return out;
}

}  // namespace

AwqNormFold awq_norm_fold(const Model& model, int64_t layer) {
  const std::string where = model.config.path + ": layer " + std::to_string(layer) + ": AWQ on the routed experts' gate/up input";
  const std::string way_out = "use awq inputs: [down]";
  return resolve(model, layer, decoder_of(model, where, way_out).ffn.expert_input, where, way_out);
}

AwqNormFold awq_attn_norm_fold(const Model& model, int64_t layer) {
  const std::string where = model.config.path + ": layer " + std::to_string(layer) + ": AWQ on the attention's input (qkv)";
  const std::string way_out = "leave qkv out of awq inputs";
  const DecoderSpec spec = decoder_of(model, where, way_out);
  AwqNormFold f = resolve(model, layer, layer_kind(spec, layer).attn_input, where, way_out);
  if (f.readers.empty())
    throw Error(where + ": none of the sites the plugin of " + model.plugin->family + " names as readers of " + f.norm_tensor +
                " is in the checkpoint; " + way_out);
  return f;
}

AwqVoFold awq_vo_fold(const Model& model, int64_t layer) {
  const std::string where = model.config.path + ": layer " + std::to_string(layer) + ": AWQ on o_proj's input";
  const std::string way_out = "leave o out of awq inputs";
  const DecoderSpec spec = decoder_of(model, where, way_out);
  const LayerKind& k = layer_kind(spec, layer);
  const VoFold& f = k.attn_output;
  auto refuse = [&](const std::string& why) {
    return Error(where + ": no exact fold for " + model.plugin->family + " (" + why + "); " + way_out);
  };
  if (!f.allowed()) throw refuse(f.why_not);
  if (k.attention != AttentionKind::Self && k.attention != AttentionKind::GatedSelf)
    throw refuse("the layer's attention has no v_proj -> o_proj pair");
  if (k.attn.v_norm) throw refuse("v_norm: a scale-free RMSNorm of each head's v, which does not pass a per-channel scale through");
  if (k.attn.k_eq_v) throw refuse("attention_k_eq_v: v is k's projection, there is no v_proj to divide");
  if (k.attn.clip_qkv > 0) throw refuse("clip_qkv clamps v after v_proj, so dividing v_proj's rows does not divide the clamped v");
  const AttnSpec& a = k.attn;
  if (a.heads <= 0 || a.kv_heads <= 0 || a.head_dim <= 0 || a.heads % a.kv_heads != 0)
    throw refuse("heads " + std::to_string(a.heads) + " / kv heads " + std::to_string(a.kv_heads) + " do not group");
  AwqVoFold out;
  out.kv_heads = a.kv_heads;
  out.group = a.heads / a.kv_heads;
  out.head_dim = a.head_dim;
  const std::string pre = "layers." + std::to_string(layer) + ".";
  const Site *v = nullptr, *o = nullptr;
  for (const Site& s : model.sites.sites) {
    if (s.layer != layer || s.role == Role::Expert) continue;
    if (s.name == pre + f.v) v = &s;
    if (s.name == pre + f.o) o = &s;
  }
  if (!v || !o) throw refuse("the checkpoint has no site " + pre + (v ? f.o : f.v));
  if (v->view.rows != a.kv_heads * a.head_dim || o->view.cols != a.heads * a.head_dim)
    throw refuse(v->name + " has " + std::to_string(v->view.rows) + " rows and " + o->name + " " + std::to_string(o->view.cols) +
                 " inputs, not kv_heads x head_dim = " + std::to_string(a.kv_heads * a.head_dim) + " and heads x head_dim = " +
                 std::to_string(a.heads * a.head_dim));
  out.v_site = v->name;
  out.o_site = o->name;
  out.v_bias = f.v_bias.empty() ? "" : aux_name(model, layer, f.v_bias);
  return out;
}

at::Tensor awq_v_row_scales(const AwqVoFold& f, const at::Tensor& o_scales) {
  return o_scales.reshape({f.kv_heads, f.group, f.head_dim}).select(1, 0).reshape({-1}).contiguous();
}

at::Tensor awq_input_scales(const AwqScales& a, const Site& site) {
  const AwqScales::Layer* l = layer_of(a, site.layer);
  if (!l) return at::Tensor();
  if (site.role == Role::Expert && site.expert >= 0) {
    if (site.proj == "down") return l->scales.defined() ? l->scales.select(0, site.expert) : at::Tensor();
    if (site.proj == "gate" || site.proj == "up") return l->gate_up;
    return at::Tensor();
  }
  if (l->gate_up.defined() && l->norm.readers.count(site.name)) return l->gate_up;
  if (l->attn_in.defined() && l->attn_norm.readers.count(site.name)) return l->attn_in;
  if (l->attn_o.defined() && site.name == l->vo.o_site) return l->attn_o;
  return at::Tensor();
}

bool awq_folds(const AwqScales& a, const Site& site) {
  if (awq_input_scales(a, site).defined()) return true;
  const AwqScales::Layer* l = layer_of(a, site.layer);
  return l && l->attn_o.defined() && site.name == l->vo.v_site;
}

at::Tensor awq_fold_weight(const AwqScales& a, const Site& site, const at::Tensor& w) {
  const AwqScales::Layer* l = layer_of(a, site.layer);
  if (!l) return w;
  at::Tensor out = w;
  const bool expert = site.role == Role::Expert && site.expert >= 0;
  if (expert && (site.proj == "up" || site.proj == "down") && l->scales.defined()) {
    const at::Tensor s = l->scales.select(0, site.expert).to(w.device());
    out = site.proj == "up" ? out.to(at::kFloat) / s.unsqueeze(-1) : out.to(at::kFloat) * s.unsqueeze(0);
  }
  if (l->attn_o.defined() && site.name == l->vo.v_site)  // v's rows take o's scales
    out = out.to(at::kFloat) / awq_v_row_scales(l->vo, l->attn_o).to(w.device()).unsqueeze(-1);
  const at::Tensor g = awq_input_scales(a, site);
  if (g.defined() && !(expert && site.proj == "down")) out = out.to(at::kFloat) * g.to(w.device()).unsqueeze(0);
  return out;
}

std::map<std::string, at::Tensor> awq_folded_tensors(const AwqScales& a, const Checkpoint& ck, const SiteMap& sites) {
  std::map<std::string, at::Tensor> out;
  auto fold_norm = [&](const AwqNormFold& f, const at::Tensor& s) {
    const at::Tensor nw = tensor_view(ck, f.norm_tensor);
    out[f.norm_tensor] = awq_fold_norm(nw, s, f.one_plus).to(nw.scalar_type()).contiguous();
  };
  for (const auto& [layer, l] : a.layers) {
    if (l.gate_up.defined()) fold_norm(l.norm, l.gate_up);
    if (l.attn_in.defined()) fold_norm(l.attn_norm, l.attn_in);
    if (l.attn_o.defined() && !l.vo.v_bias.empty()) {
      const at::Tensor b = tensor_view(ck, l.vo.v_bias);
      out[l.vo.v_bias] = (b.to(at::kFloat) / awq_v_row_scales(l.vo, l.attn_o)).to(b.scalar_type()).contiguous();
    }
    for (const Site& s : sites.sites) {
      if (s.layer != layer || (s.role == Role::Expert && s.expert >= 0) || !awq_folds(a, s)) continue;
      const WeightView& v = s.view;
      if (s.fused || v.transpose || v.expert >= 0 || v.source != SourceFormat::Plain || v.row_start != 0 || v.row_step != 1 ||
          ck.info(v.tensor).shape.size() != 2 || ck.info(v.tensor).shape[0] != v.rows)
        throw Error(s.name + " (" + v.tensor + "): AWQ's fold changes it, but it is stored in a way moeq does not fold "
                    "(not one plain 2D tensor); leave its input out of awq inputs");
      const at::Tensor w = tensor_view(ck, v.tensor);
      out[v.tensor] = awq_fold_weight(a, s, w).to(w.scalar_type()).contiguous();
    }
  }
  return out;
}

}  // namespace moeq
