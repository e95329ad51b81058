#include "model/fusion.h"

#include <map>

#include "core/error.h"
#include "model/architecture.h"

namespace moeq {
namespace {

// proj -> "{a,b,c}" over every registered architecture's groups.
std::map<std::string, std::string> groups_by_projection() {
  std::map<std::string, std::string> by_proj;
  for (const auto& e : Architectures::instance().entries())
    for (const auto& g : e.item.fusion_groups) {
      std::string members;
      for (const auto& m : g) members += (members.empty() ? "" : ",") + m;
      members = "{" + members + "}";
      for (const auto& p : g) {
        auto [it, fresh] = by_proj.emplace(p, members);
        if (!fresh && it->second != members)
          throw Error("plugin " + e.name + ": projection " + p + " in fusion group " + members + " is already in " +
                      it->second);
      }
    }
  return by_proj;
}

}  // namespace

std::string fusion_group(const Site& s) {
  static const std::map<std::string, std::string> m = groups_by_projection();  // registrations are static
  auto it = m.find(s.proj);
  const std::string tail = "." + s.proj;
  if (it == m.end() || s.name.size() <= tail.size() || s.name.compare(s.name.size() - tail.size(), tail.size(), tail) != 0)
    return "";
  return s.name.substr(0, s.name.size() - s.proj.size()) + it->second;
}

}  // namespace moeq
