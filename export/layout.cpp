#include "export/layout.h"

namespace moeq {

const ExportLayout& export_layout(const std::string& name) { return Registry<ExportLayout>::instance().get(name, "export"); }

const ExportLayout* export_layout_reading(const std::string& method) {
  return Registry<ExportLayout>::instance().find_if([&](const ExportLayout& l) { return l.quant_method == method; });
}

}  // namespace moeq
