#include "model/rules.h"

#include <cctype>

#include "core/error.h"

namespace moeq {

const char* role_name(Role r) {
  switch (r) {
    case Role::Attention: return "attention";
    case Role::DenseMlp: return "dense_mlp";
    case Role::Expert: return "experts";
    case Role::SharedExpert: return "shared_experts";
    case Role::Router: return "router";
    case Role::Embedding: return "embeddings";
    case Role::LmHead: return "lm_head";
    case Role::Norm: return "norms";
    case Role::Mtp: return "mtp";
    case Role::Tower: return "tower";
    case Role::Other: return "other";
  }
  return "?";
}

std::vector<std::string_view> split_name(const std::string& name) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.') {
      out.emplace_back(name.data() + start, i - start);
      start = i + 1;
    }
  }
  return out;
}

NamePattern::NamePattern(const std::string& pattern) : text_(pattern) {
  std::string s(pattern);
  for (auto sv : split_name(s)) {
    std::string seg(sv);
    Seg g{Seg::Literal, seg, {}};
    if (seg == "{L}") g.kind = Seg::Layer;
    else if (seg == "{E}") g.kind = Seg::Expert;
    else if (seg == "**") g.kind = Seg::Rest;
    else if (seg.rfind("{P:", 0) == 0 && seg.back() == '}') {
      g.kind = Seg::Alt;
      std::string body = seg.substr(3, seg.size() - 4);
      size_t start = 0;
      for (size_t i = 0; i <= body.size(); ++i)
        if (i == body.size() || body[i] == '|') { g.alts.push_back(body.substr(start, i - start)); start = i + 1; }
    }
    segs_.push_back(std::move(g));
  }
  for (size_t i = 0; i + 1 < segs_.size(); ++i)
    if (segs_[i].kind == Seg::Rest) throw Error("rule pattern '" + pattern + "': ** must be the last segment");
}

namespace {
bool parse_index(std::string_view s, int64_t* out) {
  if (s.empty() || s.size() > 9) return false;
  int64_t v = 0;
  for (char ch : s) {
    if (!std::isdigit(static_cast<unsigned char>(ch))) return false;
    v = v * 10 + (ch - '0');
  }
  *out = v;
  return true;
}
}  // namespace

bool NamePattern::match(const std::vector<std::string_view>& segments, Captures* out) const {
  Captures c;
  size_t i = 0;
  for (const Seg& g : segs_) {
    if (g.kind == Seg::Rest) {
      if (i >= segments.size()) return false;
      *out = c;
      return true;
    }
    if (i >= segments.size()) return false;
    const std::string_view s = segments[i++];
    switch (g.kind) {
      case Seg::Literal: if (s != g.lit) return false; break;
      case Seg::Layer: if (!parse_index(s, &c.layer)) return false; break;
      case Seg::Expert: if (!parse_index(s, &c.expert)) return false; break;
      case Seg::Alt: {
        bool found = false;
        for (const auto& a : g.alts)
          if (s == a) { c.alt = a; found = true; break; }
        if (!found) return false;
        break;
      }
      case Seg::Rest: break;
    }
  }
  if (i != segments.size()) return false;
  *out = c;
  return true;
}

std::string expand_template(const std::string& templ, const Captures& c, const std::map<std::string, std::string>& alias) {
  std::string out;
  for (size_t i = 0; i < templ.size(); ++i) {
    if (templ.compare(i, 3, "{L}") == 0) { out += std::to_string(c.layer); i += 2; }
    else if (templ.compare(i, 3, "{E}") == 0) { out += std::to_string(c.expert); i += 2; }
    else if (templ.compare(i, 3, "{P}") == 0) {
      auto it = alias.find(c.alt);
      out += it == alias.end() ? c.alt : it->second;
      i += 2;
    } else out += templ[i];
  }
  return out;
}

Rule linear(const std::string& pattern, Role role, const std::string& site, const std::string& proj,
            std::map<std::string, std::string> alias) {
  Rule r;
  r.pattern = NamePattern(pattern);
  r.layout = Layout::Linear;
  r.role = role;
  r.site = site;
  r.proj = proj;
  r.alias = std::move(alias);
  return r;
}

Rule experts_3d(const std::string& pattern, Role role, const std::string& site, const std::string& proj) {
  Rule r = linear(pattern, role, site, proj);
  r.layout = Layout::Linear3DPerExpert;
  return r;
}

Rule fused_gate_up(const std::string& pattern, Role role, const std::string& site_prefix) {
  Rule r = linear(pattern, role, site_prefix, "");
  r.layout = Layout::FusedGateUp;
  return r;
}

Rule fused_gate_up_interleaved_t(const std::string& pattern, Role role, const std::string& site_prefix) {
  Rule r = linear(pattern, role, site_prefix, "");
  r.layout = Layout::FusedGateUpInterleavedT;
  return r;
}

Rule fused_down_t(const std::string& pattern, Role role, const std::string& site_prefix) {
  Rule r = linear(pattern, role, site_prefix, "down");
  r.layout = Layout::FusedDownT;
  return r;
}

Rule mxfp4_gate_up_interleaved(const std::string& pattern, Role role, const std::string& site_prefix) {
  Rule r = linear(pattern, role, site_prefix, "");
  r.layout = Layout::Mxfp4GateUpInterleaved;
  return r;
}

Rule mxfp4_experts(const std::string& pattern, Role role, const std::string& site, const std::string& proj) {
  Rule r = linear(pattern, role, site, proj);
  r.layout = Layout::Mxfp4Experts;
  return r;
}

Rule aux(const std::string& pattern, Role role, const std::string& what) {
  Rule r;
  r.pattern = NamePattern(pattern);
  r.layout = Layout::Aux;
  r.role = role;
  r.what = what;
  return r;
}

}  // namespace moeq
