#include "formats/part_specs.h"

namespace moeq {

std::optional<std::map<std::string, PartSpec>> part_specs(const std::string& format, const std::vector<int64_t>& shape,
                                                          const FormatParams& p) {
  const QuantFormat* f = find_format(format);
  return f ? f->part_specs(shape, p) : std::nullopt;
}

}  // namespace moeq
