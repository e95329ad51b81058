#pragma once
#include <cstdint>
// The rule language plugins use to map checkpoint tensor names to sites.
// A pattern is matched segment by segment on the dot-separated name:
//   literal      must be equal
//   {L}          a layer index (digits)
//   {E}          an expert index (digits)
//   {P:a|b|c}    one of the alternatives; the match is available as {P} in the site name
//   **           the rest of the name (last segment only)
// Site templates use {L}, {E} and {P}; `alias` renames a {P} match (w1 -> gate).
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "model/site.h"

namespace moeq {

struct Captures {
  int64_t layer = -1;
  int64_t expert = -1;
  std::string alt;
};

class NamePattern {
 public:
  NamePattern() = default;
  explicit NamePattern(const std::string& pattern);
  bool match(const std::vector<std::string_view>& segments, Captures* out) const;
  const std::string& text() const { return text_; }

 private:
  struct Seg { enum Kind { Literal, Layer, Expert, Alt, Rest } kind; std::string lit; std::vector<std::string> alts; };
  std::string text_;
  std::vector<Seg> segs_;
};

// How a matched tensor becomes sites.
enum class Layout {
  Linear,               // 2D [out, in]
  Linear3DPerExpert,    // 3D [E, out, in]: one site per expert (name template has {E})
  FusedGateUp,          // 3D [E, 2I, in], gate rows first then up rows
  FusedGateUpInterleavedT,  // 3D [E, in, 2I], gate/up interleaved on the last dim (gpt-oss)
  FusedDownT,           // 3D [E, in, out] (gpt-oss down_proj [E, I, H])
  Mxfp4GateUpInterleaved,  // MXFP4 blocks U8 [E, 2I, in/32, 16], gate/up interleaved rows (gpt-oss *_blocks)
  Mxfp4Experts,         // MXFP4 blocks U8 [E, out, in/32, 16]: one site per expert (gpt-oss down_proj_blocks)
  Aux,                  // not a linear weight: claimed, not a site
};

struct Rule {
  NamePattern pattern;
  Layout layout = Layout::Linear;
  Role role = Role::Other;
  std::string site;   // site template; for Fused* layouts the prefix before .gate/.up/.down
  std::string proj;   // projection name (template allowed: {P})
  std::map<std::string, std::string> alias;
  std::string what;   // for Aux: what the tensor is
  // Added to a captured {L} for the site's / aux tensor's layer (not its name): a top-level
  // `mtp.layers.{L}` tree counts its layers after the trunk's (see plugins/common.h as_mtp).
  int64_t layer_offset = 0;
};

Rule linear(const std::string& pattern, Role role, const std::string& site, const std::string& proj,
            std::map<std::string, std::string> alias = {});
Rule experts_3d(const std::string& pattern, Role role, const std::string& site, const std::string& proj);
Rule fused_gate_up(const std::string& pattern, Role role, const std::string& site_prefix);
Rule fused_gate_up_interleaved_t(const std::string& pattern, Role role, const std::string& site_prefix);
Rule fused_down_t(const std::string& pattern, Role role, const std::string& site_prefix);
Rule mxfp4_gate_up_interleaved(const std::string& pattern, Role role, const std::string& site_prefix);
Rule mxfp4_experts(const std::string& pattern, Role role, const std::string& site, const std::string& proj);
Rule aux(const std::string& pattern, Role role, const std::string& what);

std::string expand_template(const std::string& templ, const Captures& c, const std::map<std::string, std::string>& alias);
std::vector<std::string_view> split_name(const std::string& name);

}  // namespace moeq
