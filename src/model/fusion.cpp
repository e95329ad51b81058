#include "model/fusion.h"

#include <map>

#include "core/error.h"

namespace moeq {
namespace {

struct Registry {
  std::map<std::string, FusionGroups> by_family;
  std::map<std::string, std::string> group_of_proj;  // proj -> "{a,b,c}"
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

bool register_fusion_groups(const std::string& family, const FusionGroups& groups) {
  Registry& r = registry();
  for (const auto& g : groups) {
    std::string members;
    for (const auto& m : g) members += (members.empty() ? "" : ",") + m;
    members = "{" + members + "}";
    for (const auto& p : g) {
      auto [it, fresh] = r.group_of_proj.emplace(p, members);
      if (!fresh && it->second != members)
        throw Error("plugin " + family + ": projection " + p + " in fusion group " + members + " is already in " + it->second);
    }
  }
  auto& mine = r.by_family[family];
  mine.insert(mine.end(), groups.begin(), groups.end());
  return true;
}

FusionGroups fusion_groups_of(const std::string& family) {
  auto it = registry().by_family.find(family);
  return it == registry().by_family.end() ? FusionGroups{} : it->second;
}

std::string fusion_group(const Site& s) {
  const auto& m = registry().group_of_proj;
  auto it = m.find(s.proj);
  const std::string tail = "." + s.proj;
  if (it == m.end() || s.name.size() <= tail.size() || s.name.compare(s.name.size() - tail.size(), tail.size(), tail) != 0)
    return "";
  return s.name.substr(0, s.name.size() - s.proj.size()) + it->second;
}

}  // namespace moeq
