#include "export/layout.h"

#include "core/error.h"

namespace moeq {

const ExportLayout& export_layout(const std::string& name) { return Registry<ExportLayout>::instance().get(name, "export"); }

const ExportLayout& export_layout_for(const Recipe& recipe) {
  try {
    return export_layout(recipe.export_format);
  } catch (const Error& e) {
    throw Error(recipe.path + (recipe.export_line > 0 ? ":" + std::to_string(recipe.export_line) : "") + ": " + e.what());
  }
}

const ExportLayout* export_layout_reading(const std::string& method) {
  return Registry<ExportLayout>::instance().find_if([&](const ExportLayout& l) { return l.quant_method == method; });
}

}  // namespace moeq
