#include "recipe/recipe.h"

#include <fnmatch.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "core/error.h"
#include "formats/format.h"

namespace moeq {
namespace {

int edit_distance(const std::string& a, const std::string& b) {
  std::vector<int> d(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) d[j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    int prev = d[0];
    d[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      int cur = d[j];
      d[j] = std::min({d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] != b[j - 1])});
      prev = cur;
    }
  }
  return d[b.size()];
}

struct Ctx {
  std::string path;
  [[noreturn]] void fail(const YAML::Node& n, const std::string& msg) const {
    throw Error(path + ":" + std::to_string(n.Mark().line + 1) + ": " + msg);
  }
  void check_keys(const YAML::Node& map, const std::vector<std::string>& known, const std::string& where) const {
    if (!map.IsMap()) fail(map, where + " must be a mapping");
    for (const auto& kv : map) {
      const std::string k = kv.first.as<std::string>();
      if (std::find(known.begin(), known.end(), k) != known.end()) continue;
      std::string best;
      int best_d = 1 << 30;
      for (const auto& c : known)
        if (int d = edit_distance(k, c); d < best_d) best_d = d, best = c;
      std::string list;
      for (const auto& c : known) list += (list.empty() ? "" : ", ") + c;
      fail(kv.first, "unknown key '" + k + "' in " + where +
                         (best_d <= 3 ? " (did you mean '" + best + "'?)" : "") + "; known keys: " + list);
    }
  }
  template <typename T>
  T get(const YAML::Node& n, const std::string& what) const {
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      fail(n, "'" + what + "' has the wrong type");
    }
  }
  std::vector<std::string> strings(const YAML::Node& n, const std::string& what) const {
    std::vector<std::string> out;
    if (n.IsSequence())
      for (const auto& x : n) out.push_back(get<std::string>(x, what));
    else
      out.push_back(get<std::string>(n, what));
    for (const auto& p : out)
      if (p.rfind("re:", 0) == 0) {
        try {
          std::regex re(p.substr(3));
        } catch (const std::regex_error& e) {
          fail(n, "bad regular expression in '" + what + "': " + p + " (" + e.what() + ")");
        }
      }
    return out;
  }
};

void check_format(const Ctx& c, const YAML::Node& node, const std::string& fmt) {
  const auto names = format_names();
  if (std::find(names.begin(), names.end(), fmt) != names.end()) return;
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
  c.fail(node, "unknown format '" + fmt + "'; known formats: " + list);
}

void parse_params(const Ctx& c, const YAML::Node& n, RecipeRule* r) {
  c.check_keys(n, {"block_size", "group_size", "double_quant", "symmetric", "granularity"}, "params");
  if (n["block_size"]) r->params.block_size = c.get<int64_t>(n["block_size"], "block_size");
  if (n["group_size"]) r->params.block_size = c.get<int64_t>(n["group_size"], "group_size");
  if (n["double_quant"]) r->params.double_quant = c.get<bool>(n["double_quant"], "double_quant");
  if (n["symmetric"]) r->params.symmetric = c.get<bool>(n["symmetric"], "symmetric");
  if (n["granularity"]) r->params.granularity = c.get<std::string>(n["granularity"], "granularity");
  if (r->params.block_size < 0) c.fail(n, "block_size must be positive");
}

// `calibrator: max | mse`, or a mapping {method: mse, step_size, start_multiplier,
// stop_multiplier, fp8_scale_sweep} (ModelOpt's MseCalibConfig fields). ModelOpt's
// `algorithm` may also carry layerwise / distributed_sync, which do not change the weights.
WeightCalibrator parse_calibrator(const Ctx& c, const YAML::Node& n, const std::string& where, bool modelopt) {
  WeightCalibrator w;
  if (n.IsMap()) {
    std::vector<std::string> keys = {"method", "step_size", "start_multiplier", "stop_multiplier", "fp8_scale_sweep",
                                     "block_size", "dampening", "act_order", "min_tokens", "alpha_step", "observer", "inputs", "awq"};
    if (modelopt) keys.insert(keys.end(), {"layerwise", "distributed_sync"});
    c.check_keys(n, keys, where);
    if (!n["method"]) c.fail(n, where + " needs 'method' (max, mse, gptq or awq)");
  } else if (!n.IsScalar()) {
    c.fail(n, where + " must be max, mse, gptq, awq, or a mapping with 'method'");
  }
  // (A YAML::Node assigned to another node overwrites it: no `method = n["method"]`.)
  const YAML::Node method = n.IsMap() ? n["method"] : n;
  w.method = c.get<std::string>(method, "method");
  if (w.method != "max" && w.method != "mse" && !((w.method == "gptq" || w.method == "awq") && !modelopt))
    c.fail(method, "unknown calibrator method '" + w.method + "' in " + where + (modelopt ? " (known: max, mse)" : " (known: max, mse, gptq, awq)"));
  if (!n.IsMap()) return w;
  if (n["alpha_step"] && !w.is_awq()) c.fail(n["alpha_step"], "'alpha_step' in " + where + " only applies to method awq");
  if (n["observer"]) {
    if (!w.is_gptq()) c.fail(n["observer"], "'observer' in " + where + " only applies to method gptq (its fixed grid's scales)");
    const std::string o = c.get<std::string>(n["observer"], "observer");
    if (o != "max" && o != "mse") c.fail(n["observer"], "unknown observer '" + o + "' in " + where + " (known: max, mse)");
    w.gptq_observer_mse = o == "mse";
  }
  if (n["inputs"] && !w.is_awq()) c.fail(n["inputs"], "'inputs' in " + where + " only applies to method awq");
  if (n["awq"] && !w.is_gptq())
    c.fail(n["awq"], "'awq' in " + where + " only applies to method gptq (AWQ's scales, then GPTQ); for AWQ alone use method: awq");
  // AWQ's keys, in a method awq mapping or a gptq mapping's `awq:` mapping.
  auto parse_awq = [&](const YAML::Node& n) {
    if (n["inputs"]) {
      if (!n["inputs"].IsSequence() || n["inputs"].size() == 0)
        c.fail(n["inputs"], "'inputs' in " + where + " must be a non-empty list of down, gate_up, qkv, o");
      w.awq_down = w.awq_gate_up = w.awq_qkv = w.awq_o = false;
      w.awq_inputs_given = true;
      for (const auto& x : n["inputs"]) {
        const std::string v = c.get<std::string>(x, "inputs");
        if (v == "down") w.awq_down = true;
        else if (v == "gate_up") w.awq_gate_up = true;
        else if (v == "qkv") w.awq_qkv = true;
        else if (v == "o") w.awq_o = true;
        else c.fail(x, "unknown AWQ input '" + v + "' in " + where + " (known: down, gate_up, qkv, o)");
      }
    }
    if (n["alpha_step"]) w.awq_alpha_step = c.get<double>(n["alpha_step"], "alpha_step");
    if (!(w.awq_alpha_step > 0 && w.awq_alpha_step <= 1))
      c.fail(n["alpha_step"], "'alpha_step' in " + where + " must be in (0, 1] (the grid 0, step, 2 step, ..., 1 of AWQ's exponent)");
  };
  if (w.is_awq()) {
    for (const char* k : {"step_size", "start_multiplier", "stop_multiplier", "fp8_scale_sweep", "block_size", "dampening", "act_order"})
      if (n[k]) c.fail(n[k], std::string("'") + k + "' in " + where + " does not apply to method awq (keys: alpha_step, min_tokens, inputs)");
    parse_awq(n);
    if (n["min_tokens"]) w.gptq_min_tokens = c.get<int64_t>(n["min_tokens"], "min_tokens");
    if (w.gptq_min_tokens < 1) c.fail(n["min_tokens"], "'min_tokens' in " + where + " must be >= 1");
    return w;
  }
  if (w.is_gptq() && n["awq"]) {
    const YAML::Node a = n["awq"];
    if (a.IsMap()) {
      c.check_keys(a, {"inputs", "alpha_step"}, where + " awq");
      w.gptq_awq = true;
      parse_awq(a);
    } else {
      w.gptq_awq = c.get<bool>(a, "awq");
    }
  }
  if (w.is_gptq()) {
    for (const char* k : {"step_size", "start_multiplier", "stop_multiplier", "fp8_scale_sweep"})
      if (n[k]) c.fail(n[k], std::string("'") + k + "' in " + where + " only applies to method mse");
    if (n["block_size"]) w.gptq_block_size = c.get<int64_t>(n["block_size"], "block_size");
    if (n["dampening"]) w.gptq_dampening = c.get<double>(n["dampening"], "dampening");
    if (n["act_order"]) w.gptq_act_order = c.get<bool>(n["act_order"], "act_order");
    if (n["min_tokens"]) w.gptq_min_tokens = c.get<int64_t>(n["min_tokens"], "min_tokens");
    if (w.gptq_block_size < 1) c.fail(n["block_size"], "'block_size' in " + where + " must be >= 1");
    if (!(w.gptq_dampening > 0) || !std::isfinite(w.gptq_dampening))
      c.fail(n["dampening"], "'dampening' in " + where + " must be a positive number (a fraction of the mean Hessian diagonal)");
    if (w.gptq_min_tokens < 1) c.fail(n["min_tokens"], "'min_tokens' in " + where + " must be >= 1");
    return w;
  }
  for (const char* k : {"block_size", "dampening", "act_order", "min_tokens"})
    if (n[k]) c.fail(n[k], std::string("'") + k + "' in " + where + " only applies to method gptq" +
                     (std::string(k) == "min_tokens" ? " or awq" : ""));
  auto number = [&](const char* k, double* out) {
    if (!n[k]) return;
    if (!w.is_mse()) c.fail(n[k], std::string("'") + k + "' in " + where + " only applies to method mse");
    *out = c.get<double>(n[k], k);
    if (!(*out > 0) || !std::isfinite(*out)) c.fail(n[k], std::string("'") + k + "' in " + where + " must be a positive number");
  };
  number("step_size", &w.step_size);
  number("start_multiplier", &w.start_multiplier);
  number("stop_multiplier", &w.stop_multiplier);
  if (n["fp8_scale_sweep"]) {
    w.fp8_scale_sweep = c.get<bool>(n["fp8_scale_sweep"], "fp8_scale_sweep");
    if (w.fp8_scale_sweep && !w.is_mse()) c.fail(n["fp8_scale_sweep"], "'fp8_scale_sweep' in " + where + " only applies to method mse");
  }
  if (w.start_multiplier > w.stop_multiplier)
    c.fail(n, where + ": start_multiplier " + std::to_string(w.start_multiplier) + " is above stop_multiplier " +
                  std::to_string(w.stop_multiplier));
  if (w.num_steps() > 4096)
    c.fail(n, where + ": " + std::to_string(w.num_steps()) + " candidate steps (ceil((stop - start) / step) + 1); at most 4096");
  return w;
}

// A rule's calibrator must fit its format: an error naming the rule, format and line.
void check_calibrator_fits(const Ctx& c, const YAML::Node& at, const RecipeRule& r) {
  if (!r.enable || r.format.empty() || r.format == "@input") return;
  const std::string why = calibrator_misfit(r.calibrator, r.format);
  if (!why.empty()) c.fail(at, r.describe() + ": calibrator " + r.calibrator.describe() + " does not apply to format " + r.format + ": " + why);
}

RecipeRule parse_native_rule(const Ctx& c, const YAML::Node& n, int index, const WeightCalibrator& default_calibrator) {
  c.check_keys(n, {"sites", "modules", "roles", "enable", "format", "params", "input_quant", "calibrator"},
               "rule " + std::to_string(index));
  RecipeRule r;
  r.index = index;
  r.line = n.Mark().line + 1;
  if (n["sites"]) r.sites = c.strings(n["sites"], "sites");
  if (n["modules"]) r.modules = c.strings(n["modules"], "modules");
  if (n["roles"])
    for (const auto& s : c.strings(n["roles"], "roles")) {
      Role role;
      if (!parse_role(s, &role))
        c.fail(n["roles"], "unknown role '" + s + "' (known: attention, dense_mlp, experts, shared_experts, router, "
                           "embeddings, lm_head, norms, mtp, tower, other)");
      r.roles.push_back(role);
    }
  if (r.sites.empty() && r.modules.empty() && r.roles.empty())
    c.fail(n, "rule " + std::to_string(index) + " selects nothing: give 'sites', 'modules' or 'roles'");
  if (n["enable"]) r.enable = c.get<bool>(n["enable"], "enable");
  if (n["format"]) {
    r.format = c.get<std::string>(n["format"], "format");
    check_format(c, n["format"], r.format);
  } else if (r.enable) {
    c.fail(n, "rule " + std::to_string(index) + " enables quantization but names no 'format' (or set enable: false)");
  }
  if (n["params"]) parse_params(c, n["params"], &r);
  if (n["input_quant"]) r.input_quant = c.get<bool>(n["input_quant"], "input_quant");
  r.calibrator = n["calibrator"] ? parse_calibrator(c, n["calibrator"], "rule " + std::to_string(index) + " calibrator", false)
                                 : default_calibrator;
  check_calibrator_fits(c, n["calibrator"] ? n["calibrator"] : n, r);
  return r;
}

// ModelOpt's `algorithm` for one weight rule. ModelOpt's own mse leaves some quantizers at
// max (model_calib.py): dynamic block quantizers, MX formats, and with fp8_scale_sweep
// everything but static NVFP4; moeq does the same and says so in the report.
void apply_modelopt_algorithm(const Ctx& c, const YAML::Node& at, const WeightCalibrator& algo, const std::string& block_type,
                              RecipeRule* r) {
  r->calibrator = algo;
  if (!algo.is_mse() || !r->enable || r->format == "@input") return;
  auto keep_max = [&](const std::string& why) {
    r->calibrator = WeightCalibrator{};
    r->calibrator.note = "algorithm " + algo.describe() + " left at max: " + why;
  };
  const QuantFormat* f = find_format(r->format);
  const FormatTraits t = f ? f->traits() : FormatTraits{};
  if (block_type == "dynamic") keep_max("ModelOpt's mse skips dynamic block quantizers (block_sizes type: dynamic)");
  else if (t.block_scale == BlockScale::E8M0) keep_max("ModelOpt's mse skips MX formats");
  else if (algo.fp8_scale_sweep && !takes_fp8_scale_sweep(t)) keep_max("fp8_scale_sweep calibrates static NVFP4 weights only (as ModelOpt)");
  else check_calibrator_fits(c, at, *r);
}

// The format of a ModelOpt weight quantizer: num_bits "e2m1" / [2,1] and "e4m3" / [4,3] are
// minifloats, "4" and "8" integers; block_sizes' -1 entry is the block (0: none). A format with a
// fixed block takes only that block, one with a configurable block any positive block, one
// without blocks only 0. nullptr when no format fits.
const QuantFormat* modelopt_weight_format(const std::string& bits, int64_t block) {
  int e = -1, m = -1, int_bits = 0;
  if (bits == "e2m1" || bits == "[2,1]") e = 2, m = 1;
  else if (bits == "e4m3" || bits == "[4,3]") e = 4, m = 3;
  else if (bits == "4" || bits == "8") int_bits = std::stoi(bits);
  else return nullptr;
  return find_format_where([&](const FormatTraits& t) {
    const bool element = int_bits ? t.kind == ElementKind::Int && t.bits == int_bits
                                  : t.kind == ElementKind::Float && t.exponent_bits == e && t.mantissa_bits == m;
    const bool blocks = t.block == 0 ? block == 0 : t.block_fixed ? block == t.block : block > 0;
    return element && blocks;
  });
}

// ModelOpt quant_cfg entry -> rule. Its quantizer_name globs match
// `<module>.weight_quantizer` / `<module>.input_quantizer`, so moeq keeps them as module
// patterns and records which quantizer the entry is about.
RecipeRule parse_modelopt_entry(const Ctx& c, const YAML::Node& n, int index, const WeightCalibrator& algo) {
  c.check_keys(n, {"quantizer_name", "enable", "cfg", "parent_class"}, "quant_cfg entry " + std::to_string(index));
  if (!n["quantizer_name"]) c.fail(n, "quant_cfg entry needs 'quantizer_name'");
  RecipeRule r;
  r.index = index;
  r.line = n.Mark().line + 1;
  std::string q = c.get<std::string>(n["quantizer_name"], "quantizer_name");
  r.modules = {q};
  r.enable = n["enable"] ? c.get<bool>(n["enable"], "enable") : true;
  const bool input = q.find("input_quantizer") != std::string::npos;
  const bool weight = q.find("weight_quantizer") != std::string::npos;
  if (input && !weight) {
    r.input_quant = r.enable;
    r.format = "@input";  // decides only the activation quantizer
    return r;
  }
  if (!r.enable || !n["cfg"]) {
    r.enable = false;
    return r;
  }
  const YAML::Node cfg = n["cfg"];
  std::string bits;
  if (cfg["num_bits"].IsSequence()) {
    bits = "[" + cfg["num_bits"][0].as<std::string>() + "," + cfg["num_bits"][1].as<std::string>() + "]";
  } else if (cfg["num_bits"]) {
    bits = cfg["num_bits"].as<std::string>();
  }
  int64_t block = 0;
  std::string scale_bits, block_type;
  if (cfg["block_sizes"]) {
    for (const auto& kv : cfg["block_sizes"]) {
      const std::string k = kv.first.as<std::string>();
      if (k == "-1") block = kv.second.as<int64_t>();
      if (k == "type") block_type = kv.second.as<std::string>();
      if (k == "scale_bits") scale_bits = kv.second.IsSequence() ? "[" + kv.second[0].as<std::string>() + "," + kv.second[1].as<std::string>() + "]"
                                                                : kv.second.as<std::string>();
    }
  }
  if (const QuantFormat* f = modelopt_weight_format(bits, block)) {
    const FormatTraits t = f->traits();
    r.format = f->name();
    if (t.kind == ElementKind::Int) r.params.block_size = block;
    if (t.granularity_param && cfg["axis"] && !cfg["axis"].IsNull()) r.params.granularity = "channel";
  } else {
    c.fail(n, "quant_cfg entry " + std::to_string(index) + ": num_bits " + bits + " with block size " +
                  std::to_string(block) + " has no moeq format (supported: e2m1/16 nvfp4, e2m1/32 mxfp4, e4m3 fp8, "
                  "4 or 8 bits with a block size: int4/int8)");
  }
  if (!weight) r.input_quant = true;  // a pattern for both quantizers of a module
  apply_modelopt_algorithm(c, n, algo, block_type, &r);
  return r;
}

}  // namespace

int64_t WeightCalibrator::num_steps() const {
  return static_cast<int64_t>(std::ceil((stop_multiplier - start_multiplier) / step_size)) + 1;
}

std::string WeightCalibrator::describe() const {
  if (is_gptq()) {
    char g[160];
    std::snprintf(g, sizeof g, "gptq (block %lld, dampening %g, act_order %s, min_tokens %lld%s)",
                  static_cast<long long>(gptq_block_size), gptq_dampening, gptq_act_order ? "true" : "false",
                  static_cast<long long>(gptq_min_tokens), gptq_observer_mse ? ", observer mse" : "");
    if (!gptq_awq) return g;
    WeightCalibrator a = *this;
    a.method = "awq";
    a.gptq_awq = false;
    return std::string(g) + " after " + a.describe();
  }
  if (is_awq()) {
    std::string inputs;
    for (const auto& [on, name] : {std::pair{awq_gate_up, "gate_up"}, {awq_down, "down"}, {awq_qkv, "qkv"}, {awq_o, "o"}})
      if (on) inputs += (inputs.empty() ? "" : ", ") + std::string(name);
    char a[200];
    std::snprintf(a, sizeof a, "awq (alpha_step %g, min_tokens %lld, inputs %s%s)", awq_alpha_step,
                  static_cast<long long>(gptq_min_tokens), inputs.c_str(), awq_inputs_given ? "" : " by default");
    return a;
  }
  if (!is_mse()) return method;
  if (fp8_scale_sweep) return "mse (fp8 scale sweep)";
  char b[128];
  std::snprintf(b, sizeof b, "mse (amax x %g..%g, %lld steps)", start_multiplier, stop_multiplier,
                static_cast<long long>(num_steps()));
  return b;
}

std::string calibrator_misfit(const WeightCalibrator& c, const std::string& format) {
  const QuantFormat* f = find_format(format);
  const FormatTraits t = f ? f->traits() : FormatTraits{};
  if (c.is_gptq()) {
    if (c.gptq_observer_mse && t.gptq && t.kind == ElementKind::Float)
      return "observer mse searches integer group scales; for nvfp4 leave it out (GPTQ on the max scales) or use calibrator: mse";
    return t.gptq ? ""
               : "moeq's GPTQ covers nvfp4 and int4/int8 (symmetric); use calibrator: max for this rule";
  }
  if (c.is_awq())
    return t.gptq ? ""
               : "moeq's AWQ covers nvfp4 and int4/int8 (symmetric), the grids GPTQ covers; use calibrator: max for this rule";
  if (!c.is_mse()) return "";
  if (c.fp8_scale_sweep)
    return takes_fp8_scale_sweep(t) ? "" : "fp8_scale_sweep picks NVFP4 block scales among the FP8 E4M3 values; use mse without it (fp8) or max";
  if (t.mse != MseSearch::None) return "";
  return "moeq's MSE search covers nvfp4 (block scales) and fp8 (tensor or channel scales); use calibrator: max for this rule";
}

std::string RecipeRule::describe() const {
  return "rule " + std::to_string(index) + " (line " + std::to_string(line) + ")";
}

bool is_protected_role(Role r) {
  return r == Role::Router || r == Role::Embedding || r == Role::LmHead || r == Role::Mtp || r == Role::Tower;
}

bool parse_role(const std::string& s, Role* out) {
  for (Role r : kAllRoles)
    if (s == role_name(r)) { *out = r; return true; }
  return false;
}

bool pattern_matches(const std::string& pattern, const std::string& text) {
  if (pattern.rfind("re:", 0) == 0) return std::regex_match(text, std::regex(pattern.substr(3)));
  return ::fnmatch(pattern.c_str(), text.c_str(), 0) == 0;
}

namespace {
Recipe parse_recipe_unguarded(const std::string& text, const std::string& path) {
  Ctx c{path};
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error(path + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML: " + e.msg);
  }
  if (!root.IsMap()) throw Error(path + ": a recipe is a YAML mapping with a 'rules' list (or ModelOpt 'quantize')");
  Recipe r;
  r.path = path;
  if (root["quantize"]) {  // ModelOpt style
    c.check_keys(root, {"quantize", "name", "description", "export", "weight_only"}, "the recipe");
    const YAML::Node q = root["quantize"];
    c.check_keys(q, {"algorithm", "quant_cfg"}, "quantize");
    const WeightCalibrator algo = q["algorithm"] ? parse_calibrator(c, q["algorithm"], "algorithm", true) : WeightCalibrator{};
    if (!q["quant_cfg"] || !q["quant_cfg"].IsSequence()) c.fail(q, "'quant_cfg' must be a list");
    int i = 0;
    for (const auto& e : q["quant_cfg"]) r.rules.push_back(parse_modelopt_entry(c, e, ++i, algo));
    r.modelopt_style = true;
  } else {
    c.check_keys(root, {"recipe", "name", "description", "export", "weight_only", "consumer_checks", "calibrator", "rules"}, "the recipe");
    if (!root["rules"] || !root["rules"].IsSequence()) c.fail(root, "a recipe needs a 'rules' list");
    const WeightCalibrator dflt = root["calibrator"] ? parse_calibrator(c, root["calibrator"], "the recipe's calibrator", false)
                                                     : WeightCalibrator{};
    int i = 0;
    for (const auto& e : root["rules"]) r.rules.push_back(parse_native_rule(c, e, ++i, dflt));
  }
  for (const char* k : {"recipe", "name"})
    if (root[k]) r.name = c.get<std::string>(root[k], k);
  if (r.name.empty()) {
    std::string base = path.substr(path.rfind('/') + 1);
    r.name = base.substr(0, base.rfind('.'));
  }
  if (root["description"]) r.description = c.get<std::string>(root["description"], "description");
  if (root["weight_only"]) r.weight_only = c.get<bool>(root["weight_only"], "weight_only");
  if (root["consumer_checks"]) r.consumer_checks = c.get<bool>(root["consumer_checks"], "consumer_checks");
  if (root["export"]) {
    r.export_format = c.get<std::string>(root["export"], "export");
    r.export_line = root["export"].Mark().line + 1;  // the layout registry (export/) checks the name
  }
  return r;
}
}  // namespace

Recipe parse_recipe(const std::string& text, const std::string& path) {
  try {
    return parse_recipe_unguarded(text, path);
  } catch (const YAML::Exception& e) {  // a conversion not checked by name above (found by fuzzing)
    throw Error(path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg + " (a value of the wrong type)");
  }
}

Recipe load_recipe(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open recipe");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_recipe(ss.str(), path);
}

namespace {
bool rule_matches(const RecipeRule& r, const Site& s, const char* quantizer) {
  if (!r.roles.empty() && std::find(r.roles.begin(), r.roles.end(), s.role) == r.roles.end()) return false;
  bool named = r.sites.empty() && r.modules.empty();  // roles alone select
  for (const auto& p : r.sites) named = named || pattern_matches(p, s.name);
  const std::string target = quantizer ? s.module + "." + quantizer : s.module;
  for (const auto& p : r.modules) named = named || pattern_matches(p, target) || (!quantizer && pattern_matches(p, s.module + ".weight"));
  return named;
}
}  // namespace

Plan make_plan(const Recipe& recipe, const std::vector<Site>& sites, bool strict) {
  Plan plan;
  std::vector<size_t> hits(recipe.rules.size(), 0);
  const bool modelopt = recipe.modelopt_style;
  std::map<const RecipeRule*, std::vector<std::string>> misfits;
  for (const Site& s : sites) {
    SitePlan sp;
    sp.site = &s;
    sp.reason = is_protected_role(s.role) ? std::string("protected role ") + role_name(s.role) + " (not quantized by default)"
                                          : "no rule matched";
    const RecipeRule* input_rule = nullptr;
    for (size_t i = 0; i < recipe.rules.size(); ++i) {
      const RecipeRule& r = recipe.rules[i];
      if (r.format == "@input") {
        if (rule_matches(r, s, modelopt ? "input_quantizer" : nullptr)) { input_rule = &r; hits[i]++; }
        continue;
      }
      if (!rule_matches(r, s, modelopt ? "weight_quantizer" : nullptr)) continue;
      hits[i]++;
      sp.rule = &r;
      if (r.input_quant || !modelopt) input_rule = &r;
    }
    if (sp.rule) {
      const RecipeRule& r = *sp.rule;
      const bool role_named = std::find(r.roles.begin(), r.roles.end(), s.role) != r.roles.end();
      if (!r.enable) {
        sp.reason = "excluded by " + r.describe();
      } else if (is_protected_role(s.role) && !role_named) {
        sp.reason = std::string("protected role ") + role_name(s.role) + " (name it in a rule's roles: to quantize)";
      } else {
        const QuantFormat& fmt = format_by_name(r.format);  // unknown: an error, not a misfit
        try {
          fmt.validate({s.view.rows, s.view.cols}, r.params);
          sp.quantize = true;
          sp.format = r.format;
          sp.params = r.params;
          sp.input_quant = !recipe.weight_only && input_rule && input_rule->input_quant && input_rule->enable;
          sp.calibrator = r.calibrator;
          sp.reason = r.describe();
        } catch (const Error& e) {
          sp.reason = std::string("shape not supported: ") + e.what();
          misfits[&r].push_back(s.name);
        }
      }
    }
    plan.sites.push_back(sp);
  }
  for (size_t i = 0; i < recipe.rules.size(); ++i)
    if (hits[i] == 0)
      plan.warnings.push_back(recipe.path + ": " + recipe.rules[i].describe() + " matched no site");
  for (const auto& [rule, names] : misfits) {
    size_t matched = hits[rule->index - 1];
    std::string w = recipe.path + ": " + rule->describe() + ": " + std::to_string(names.size()) + " of " +
                    std::to_string(matched) + " sites do not fit " + rule->format + " (first: " + names[0] + ")";
    if (names.size() == matched)
      throw Error(w + "; check the block size against the model's dimensions");
    plan.warnings.push_back(w);
  }
  // A rule that names roles and quantizes nothing of them is a recipe that does not fit
  // the model (an expert layout the plugin did not map, a role the model lacks).
  for (const RecipeRule& r : recipe.rules) {
    if (!r.enable || r.roles.empty() || r.format == "@input") continue;
    size_t of_roles = 0, quantized = 0;
    for (const SitePlan& sp : plan.sites) {
      if (std::find(r.roles.begin(), r.roles.end(), sp.site->role) == r.roles.end()) continue;
      ++of_roles;
      if (sp.quantize) ++quantized;
    }
    if (quantized > 0) continue;
    std::string names;
    for (Role role : r.roles) names += (names.empty() ? "" : ", ") + std::string(role_name(role));
    throw Error(recipe.path + ": " + r.describe() + " names roles [" + names + "] but quantizes no site of them (" +
                (of_roles == 0 ? std::string("the model has none: check the model and its plugin with moeq inspect")
                               : std::to_string(of_roles) + " sites of those roles, every one decided otherwise") + ")");
  }
  if (strict && !plan.warnings.empty()) throw Error(plan.warnings[0] + " (--strict)");
  return plan;
}

}  // namespace moeq
