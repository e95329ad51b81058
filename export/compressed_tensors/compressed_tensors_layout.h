#pragma once
// What export/compressed_tensors/ hands the layout registry (compressed_tensors_layout.cpp
// registers it): the writer (compressed_tensors_writer.cpp) and the verify reader
// (compressed_tensors_reader.cpp).
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "export/layout.h"

namespace moeq {

std::shared_ptr<const ExportWriter> make_compressed_tensors_writer();
std::unique_ptr<ExportReader> open_compressed_tensors_reader(const std::string& dir, const nlohmann::json& qc,
                                                             std::shared_ptr<Checkpoint> ck);

}  // namespace moeq
