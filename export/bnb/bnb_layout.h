#pragma once
// What export/bnb/ hands the layout registry (bnb_layout.cpp registers it): the
// writer (bnb_writer.cpp) and the verify reader (bnb_reader.cpp).
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "export/layout.h"

namespace moeq {

std::shared_ptr<const ExportWriter> make_bnb_writer();
std::unique_ptr<ExportReader> open_bnb_reader(const std::string& dir, const nlohmann::json& qc, std::shared_ptr<Checkpoint> ck);

}  // namespace moeq
