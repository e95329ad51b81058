#pragma once
// The dtypes and shapes of the parts a format's quantize() returns, known before quantizing
// (lets an export create its files first and write every part as it comes; see
// quant/export_layout.h). Each format declares its own (QuantFormat::part_specs); the
// contract test holds each declaration to the format's real output.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "formats/format.h"

namespace moeq {

// For a weight [out, in] or stack [E, out, in]; throws moeq::Error where the format refuses
// the shape or params (its validate()); nullopt for unknown names and for formats that do not
// declare their parts (their exports keep the buffered path).
std::optional<std::map<std::string, PartSpec>> part_specs(const std::string& format, const std::vector<int64_t>& shape,
                                                          const FormatParams& p);

}  // namespace moeq
