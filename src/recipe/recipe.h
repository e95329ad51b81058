#pragma once
// Recipes: an ordered list of rules that pick a format (or no quantization) for each site.
// Later rules override earlier ones, as in NVIDIA Model Optimizer's quant_cfg. moeq reads
// its own YAML form and ModelOpt-style `quantize: {quant_cfg: [...]}` YAML.
//
// Protected roles (router, embeddings, lm_head) are never quantized unless the rule that
// decides a site names that role in its `roles:` list.
#include <string>
#include <vector>

#include "formats/format.h"
#include "model/site.h"

namespace moeq {

struct RecipeRule {
  int index = 0;                     // 1-based position in the recipe
  int line = 0;                      // line in the YAML file
  std::vector<std::string> sites;    // glob (fnmatch) or `re:` regex over canonical site names
  std::vector<std::string> modules;  // glob or `re:` over checkpoint module names (model.layers.0.mlp...)
  std::vector<Role> roles;           // optional role filter; naming a protected role unprotects it
  bool enable = true;
  std::string format;                // required when enable
  FormatParams params;
  bool input_quant = false;          // also quantize activations (W4A4 / W8A8): needs calibration
  std::string describe() const;      // "rule 2 (line 7)"
};

struct Recipe {
  std::string path, name, description;
  std::string export_format = "modelopt";  // modelopt | compressed-tensors | bnb
  bool weight_only = false;                // ignore input_quant (no calibration needed)
  bool modelopt_style = false;             // rules came from a ModelOpt quant_cfg (match <module>.weight_quantizer)
  std::vector<RecipeRule> rules;
};

// Parses and validates a recipe file. Throws moeq::Error naming file, line and key, with
// a suggestion for misspelled keys and the list of known formats for unknown ones.
Recipe load_recipe(const std::string& path);
Recipe parse_recipe(const std::string& yaml_text, const std::string& path);

struct SitePlan {
  const Site* site = nullptr;
  bool quantize = false;
  std::string format;
  FormatParams params;
  bool input_quant = false;
  const RecipeRule* rule = nullptr;  // the rule that decided, or null
  std::string reason;                // why skipped (or "rule N" for quantized)
};

struct Plan {
  std::vector<SitePlan> sites;        // one per site, in site order
  std::vector<std::string> warnings;  // rules that matched nothing, shapes that did not fit
};

// Decides every site. strict: warnings become errors.
Plan make_plan(const Recipe& recipe, const std::vector<Site>& sites, bool strict);

bool is_protected_role(Role r);
bool parse_role(const std::string& s, Role* out);
// fnmatch glob, or std::regex (ECMAScript, full match) when the pattern starts with `re:`.
bool pattern_matches(const std::string& pattern, const std::string& text);

}  // namespace moeq
