#include "export/writer.h"

#include "core/error.h"

namespace moeq {

at::Tensor part_of(const QuantizedSite& s, const std::string& part) {
  auto it = s.q->parts.find(part);
  if (it == s.q->parts.end()) throw Error("export: format " + s.q->format + " has no part '" + part + "'");
  return s.index >= 0 ? it->second.select(0, s.index) : it->second;
}

}  // namespace moeq
