#pragma once
// Writes a small file whole (config.json, reports, indexes) and checks every step: a full
// disk gives an error naming the file, never a truncated file in a committed export.
#include <string>

namespace moeq {

// Creates or truncates `path`, writes `text`, fsyncs and closes it; throws moeq::Error
// ("PATH: cannot write: No space left on device") on any failure.
void write_text_file(const std::string& path, const std::string& text);

}  // namespace moeq
