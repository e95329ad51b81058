#include "export/writer.h"

#include "core/error.h"

namespace moeq {
namespace {
std::vector<std::unique_ptr<ExportWriter>>& registry() {
  static std::vector<std::unique_ptr<ExportWriter>> r;
  return r;
}
}  // namespace

bool register_writer(std::unique_ptr<ExportWriter> w) {
  registry().push_back(std::move(w));
  return true;
}

const ExportWriter& writer_by_name(const std::string& name) {
  std::string known;
  for (const auto& w : registry()) {
    if (w->name() == name) return *w;
    known += (known.empty() ? "" : ", ") + w->name();
  }
  throw Error("no export writer '" + name + "' (available: " + known + ")");
}

at::Tensor part_of(const QuantizedSite& s, const std::string& part) {
  auto it = s.q->parts.find(part);
  if (it == s.q->parts.end()) throw Error("export: format " + s.q->format + " has no part '" + part + "'");
  return s.index >= 0 ? it->second.select(0, s.index) : it->second;
}

}  // namespace moeq
