#include "app/compare/export_eval.h"

#include "calib/calibrators/awq_job.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <set>

#include "core/error.h"
#include "export/layout.h"
#include "formats/format.h"
#include "model/plugin.h"
#include "tensor/aten_view.h"

namespace moeq {
namespace {

// One linear of the export as the forward gets it.
struct ExportLinear {
  bool quantized = false;
  QuantizedTensor q;  // quantized: the reader's parts (views into the export's mmap)
  Site site;          // unquantized: the export's site, read with site_weight
};

struct ExportWeights {
  std::shared_ptr<Checkpoint> ck;
  std::map<std::string, ExportLinear> linears;  // by canonical site name

  at::Tensor operator()(const Site& s, const at::Tensor& w) const {
    auto it = linears.find(s.name);
    if (it == linears.end())  // open_export_eval checked every site of the source
      throw Error(ck->dir() + ": no linear for site " + s.name);
    const ExportLinear& l = it->second;
    if (!l.quantized) return site_weight(*ck, l.site).to(w.device(), w.scalar_type());
    QuantizedTensor q = l.q;
    for (auto& [name, part] : q.parts) part = part.to(w.device());
    return format_by_name(q.format).dequantize(q, at::kFloat).to(w.scalar_type()).view(w.sizes());
  }
};

// "<dir>/<shard>: tensor '<name>'": the stored tensor (a packed `<module>.weight_packed` for the
// logical `<module>.weight` a reader shows), or the directory when nothing is stored under the name.
std::string where(const Checkpoint& ck, const std::string& tensor) {
  if (ck.has(tensor)) return ck.file_of(tensor).path() + ": tensor '" + tensor + "'";
  if (ck.has(tensor + "_packed")) return ck.file_of(tensor + "_packed").path() + ": tensor '" + tensor + "_packed'";
  return ck.dir() + ": tensor '" + tensor + "'";
}

}  // namespace

ExportEval open_export_eval(const Model& source, const std::string& name, const std::string& dir, int worst_experts) {
  const ModelConfig cfg = load_config(dir);
  const ArchPlugin& plugin = plugin_for(cfg);
  if (plugin.family != source.plugin->family)
    throw Error(dir + "/config.json: an export of a " + plugin.family + " model, but the source " + source.dir + " is " +
                source.plugin->family);
  // moeq's AWQ exports hold the folded weights: their weight error is against the folded source
  // (as compare --recipes and verify --source measure it). The forward needs nothing from the
  // scales: the folded norms and biases are the export's aux tensors, taken below.
  const std::shared_ptr<const AwqScales> awq = read_awq_scales(dir, &source);
  auto ck = Checkpoint::open(dir);
  auto opened = open_export_reader(dir, cfg, ck);
  const ExportLayout& layout = *opened.first;
  const ExportReader& reader = *opened.second;
  std::vector<const TensorInfo*> infos;
  for (const auto& t : reader.weights()) infos.push_back(&t);
  const SiteMap map = map_sites(plugin, cfg, infos, dir);
  const std::string what = "moeq compare --exports (" + layout.name + " layout)";
  if (!map.unclaimed.empty())
    throw Error(where(*ck, map.unclaimed[0]) + " is understood by neither the " + layout.name +
                " reader (not one of its quantization parameters) nor the " + plugin.family + " plugin; " + what +
                " does not know what it does" +
                (map.unclaimed.size() > 1 ? " (" + std::to_string(map.unclaimed.size() - 1) + " more such tensors)" : ""));

  std::map<std::string, const Site*> src_sites;
  for (const Site& s : source.sites.sites) src_sites[s.name] = &s;
  const Checkpoint& src = *source.checkpoint;

  ExportEval out;
  Variant& v = out.variant;
  v.name = name;
  v.source = dir;
  v.export_format = layout.name;
  auto weights = std::make_shared<ExportWeights>();
  weights->ck = ck;
  std::set<std::string> used, formats, input_formats, seen;
  std::vector<InputSite> input_sites;  // pointing at the source's sites
  int64_t unquantized_experts = 0;
  double bits_q = 0;
  std::map<std::string, int64_t> stored_float;  // role -> linears the export stores unquantized

  for (const Site& s : map.sites) {
    auto it = src_sites.find(s.name);
    if (it == src_sites.end())
      throw Error(where(*ck, s.view.tensor) + " (site " + s.name + ") has no counterpart in the source " + source.dir);
    const Site& ss = *it->second;
    // Shapes: a quantized site's decoded weight (its stored one may be packed), checked below.
    auto shape_error = [&](int64_t rows, int64_t cols) {
      return Error(where(*ck, s.view.tensor) + " (site " + s.name + ") is [" + std::to_string(rows) + ", " +
                   std::to_string(cols) + "], the source's [" + std::to_string(ss.view.rows) + ", " +
                   std::to_string(ss.view.cols) + "]");
    };
    seen.insert(s.name);
    std::string problem;
    std::set<std::string> used_here;
    const ReadSite rs = reader.read(s, [&](const std::string& m) { if (problem.empty()) problem = m; }, used_here);
    if (!problem.empty()) throw Error(where(*ck, s.view.tensor) + " (site " + s.name + "): " + problem);
    if (!rs.input_unsupported.empty())
      throw Error(where(*ck, s.view.tensor) + " (site " + s.name + "): " + rs.input_unsupported + "; " + what +
                  " fake-quantizes inputs with static scales only (NVFP4 W4A4, FP8 W8A8)");
    used.insert(used_here.begin(), used_here.end());
    ExportLinear l;
    if (rs.format.empty()) {
      if (ss.view.rows != s.view.rows || ss.view.cols != s.view.cols) throw shape_error(s.view.rows, s.view.cols);
      l.site = s;
      weights->linears[s.name] = l;
      stored_float[role_name(s.role)]++;
      if (s.role == Role::Expert) unquantized_experts++;
      continue;
    }
    if (!rs.q) throw Error(where(*ck, s.view.tensor) + " (site " + s.name + "): " + rs.format + " weight not decodable");
    l.quantized = true;
    l.q = *rs.q;
    formats.insert(rs.format);

    // Weight error against the source, as compare measures it (float32 on the host, double sums).
    const at::Tensor deq = format_by_name(rs.format).dequantize(l.q, at::kFloat).to(at::kCPU).contiguous();
    at::Tensor ref = site_weight(src, ss).to(at::kFloat);
    if (awq) ref = awq_fold_weight(*awq, ss, ref);
    ref = ref.contiguous();
    if (deq.dim() != 2 || deq.sizes() != ref.sizes()) throw shape_error(deq.size(0), deq.dim() > 1 ? deq.size(-1) : 1);
    std::vector<double> sig, noi;
    site_energies(ref, deq, &sig, &noi);
    const std::string stored = ck->has(s.view.tensor) ? s.view.tensor : s.view.tensor + "_packed";
    uint64_t bytes = ck->has(stored) ? ck->info(stored).nbytes() : 0;
    for (const auto& p : used_here) bytes += ck->info(p).nbytes();
    SiteError e;
    e.site = s.name;
    e.format = rs.format;
    e.proj = s.proj;
    e.role = s.role;
    e.layer = s.layer;
    e.expert = s.expert;
    e.rows = ss.view.rows;  // the logical shape (the export's view of a packed weight may be narrower)
    e.cols = ss.view.cols;
    e.block_size = l.q.params.block_size;
    e.bits_per_weight = 8.0 * static_cast<double>(bytes) / static_cast<double>(e.rows * e.cols);
    e.signal = sig[0];
    e.noise = noi[0];
    e.sqnr_db = e.noise == 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(e.signal / e.noise);
    e.rel_err = e.noise == 0 ? 0 : (e.signal == 0 ? std::numeric_limits<double>::infinity() : std::sqrt(e.noise / e.signal));
    bits_q += 8.0 * static_cast<double>(bytes);
    v.quantized_weights += e.rows * e.cols;
    v.sites.push_back(e);
    weights->linears[s.name] = l;

    if (rs.input_quantized) {
      input_sites.push_back({&ss, rs.format, rs.act_scale});
      input_formats.insert(rs.format);
    }
  }
  for (const auto& p : reader.params())
    if (!used.count(p))
      throw Error(where(*ck, p) + " is a quantization parameter that no weight of the export uses");
  for (const Site& s : source.sites.sites)
    if (!seen.count(s.name))
      throw Error(dir + ": the export has no tensor for site " + s.name + " (the source's '" + s.view.tensor +
                  "'); " + what + " runs only what the export holds");

  // Aux tensors (norms, biases, ...): the forward takes every one from the export, which must hold
  // each under the source's name and shape (any dtype: the forward casts to its compute dtype).
  // Counted: how many differ from the source's values (AWQ folding a scale into a norm or a bias).
  ExportAux& xa = v.aux;
  xa.from_export = true;
  auto aux_names = std::make_shared<std::set<std::string>>();
  for (const AuxTensor& a : source.sites.aux) {
    if (!ck->has(a.tensor))
      throw Error(dir + ": the export lacks the source's " + a.what + " '" + a.tensor + "' (" + source.dir + ")");
    if (ck->info(a.tensor).shape != src.info(a.tensor).shape)
      throw Error(where(*ck, a.tensor) + " (" + a.what + ") has another shape than the source's");
    aux_names->insert(a.tensor);
    xa.tensors++;
    if (ck->info(a.tensor).dtype != src.info(a.tensor).dtype) xa.other_dtype++;
    if (!at::equal(tensor_view(*ck, a.tensor).to(at::kFloat), tensor_view(src, a.tensor).to(at::kFloat))) {
      xa.differing++;
      xa.differing_tensors.push_back(a.tensor);
    }
  }
  for (const AuxTensor& a : map.aux)
    if (!aux_names->count(a.tensor))
      throw Error(where(*ck, a.tensor) + " (" + a.what + ") is not in the source " + source.dir +
                  "; the source's forward would ignore it");
  {
    std::string w = std::to_string(xa.tensors) + " aux tensors (norms, biases, ...) taken from the export, " +
                    std::to_string(xa.differing) + " with values other than the source's";
    for (size_t k = 0; k < xa.differing_tensors.size() && k < 3; ++k) w += (k ? ", " : ": ") + xa.differing_tensors[k];
    if (xa.differing_tensors.size() > 3) w += ", ...";
    if (xa.other_dtype) w += "; " + std::to_string(xa.other_dtype) + " stored in another dtype than the source's";
    v.warnings.push_back(w);
  }
  if (awq)
    v.warnings.push_back(std::string("AWQ export (") + kAwqScalesFile +
                         "): weight errors are against the source folded with its scales; the forward runs the export's "
                         "folded weights and aux tensors");
  out.aux = [ck, aux_names](const std::string& name, const at::Tensor& t) {
    if (!aux_names->count(name))
      throw Error(ck->dir() + ": the forward reads '" + name + "', which is not one of the source's aux tensors that " +
                  "compare --exports checked in the export");
    return tensor_view(*ck, name).to(t.device()).to(t.scalar_type());
  };
  out.weights = [weights](const Site& s, const at::Tensor& w) { return (*weights)(s, w); };

  // Input quantization from the export's scales; gate and up share one input: the larger scale.
  std::map<std::pair<int64_t, int64_t>, float> gate_up;  // (layer, expert) -> max scale
  for (const InputSite& is : input_sites)
    if (is.site->role == Role::Expert && (is.site->proj == "gate" || is.site->proj == "up")) {
      float& m = gate_up[{is.site->layer, is.site->expert}];
      m = std::max(m, is.scale);
    }
  int64_t differing = 0;
  for (InputSite& is : input_sites)
    if (is.site->role == Role::Expert && (is.site->proj == "gate" || is.site->proj == "up")) {
      const float m = gate_up.at({is.site->layer, is.site->expert});
      if (is.scale != m) differing++;
      is.scale = m;
    }
  if (differing)
    v.warnings.push_back(std::to_string(differing) + " expert gate/up linears carry a smaller input scale than their "
                         "partner; their shared input is quantized with the larger one (as a fused gate_up kernel does)");
  std::map<int64_t, int64_t> num_experts;
  for (const Site& s : source.sites.sites)
    if (s.role == Role::Expert && s.expert >= 0) num_experts[s.layer] = std::max(num_experts[s.layer], s.expert + 1);
  out.inputs = input_transforms_of(input_sites, num_experts, dir);
  v.input_quant_sites = out.inputs.sites;
  v.activations_quantized = out.inputs.sites > 0;
  v.activations = out.inputs.sites ? activation_label(input_formats) + " (input scales from the export)"
                                   : "none (the export quantizes no activations)";

  v.formats.assign(formats.begin(), formats.end());
  v.sites_total = static_cast<int64_t>(source.sites.sites.size());
  for (const auto& n : src.names()) v.source_bytes += src.info(n).nbytes();
  v.expected_bytes = ck->total_bytes();
  v.bits_per_weight = v.quantized_weights ? bits_q / static_cast<double>(v.quantized_weights) : 0.0;
  if (unquantized_experts)
    v.warnings.push_back(std::to_string(unquantized_experts) + " expert linears are stored unquantized in the export");
  for (const auto& [role, n] : stored_float) v.skipped["stored unquantized in the export (" + role + ")"] += n;
  summarize_variant(v, source.sites, worst_experts);
  return out;
}

}  // namespace moeq
