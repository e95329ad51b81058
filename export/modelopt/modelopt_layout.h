#pragma once
// What export/modelopt/ hands the layout registry (modelopt_layout.cpp registers it): the
// writer (modelopt_writer.cpp) and the verify reader (modelopt_reader.cpp).
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "export/layout.h"

namespace moeq {

std::shared_ptr<const ExportWriter> make_modelopt_writer();
std::unique_ptr<ExportReader> open_modelopt_reader(const std::string& dir, const nlohmann::json& qc, std::shared_ptr<Checkpoint> ck);

}  // namespace moeq
