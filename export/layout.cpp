#include "export/layout.h"

#include <algorithm>
#include <vector>

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

namespace {

// "bitsandbytes, compressed-tensors and modelopt": the quant_methods of the registered layouts.
std::string readable_quant_methods() {
  std::vector<std::string> methods;
  for (const auto& e : Registry<ExportLayout>::instance().entries()) methods.push_back(e.item.quant_method);
  std::sort(methods.begin(), methods.end());
  std::string out;
  for (size_t i = 0; i < methods.size(); ++i) out += (i == 0 ? "" : i + 1 == methods.size() ? " and " : ", ") + methods[i];
  return out;
}

}  // namespace

std::pair<const ExportLayout*, std::unique_ptr<ExportReader>> open_export_reader(const std::string& dir, const ModelConfig& cfg,
                                                                                  std::shared_ptr<Checkpoint> ck) {
  auto qc = cfg.raw.find("quantization_config");
  if (qc == cfg.raw.end()) throw Error(dir + "/config.json: no quantization_config: not a quantized export");
  const std::string method = qc->value("quant_method", "");
  const ExportLayout* layout = export_layout_reading(method);
  if (!layout)
    throw Error(dir + ": quant_method '" + method + "' is not verifiable (moeq verify reads " + readable_quant_methods() + " exports)");
  return {layout, layout->open_reader(dir, *qc, std::move(ck))};
}

}  // namespace moeq
