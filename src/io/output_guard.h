#pragma once
// Outputs never touch their inputs: refuse an output path that is an input, lies inside it
// or contains it, compared as real paths (symlinks resolved; a path that does not exist yet
// through its existing parents). The output's parent is checked too, since moeq writes its
// temporary (`OUT.tmp-*`) and lock (`OUT.lock`) beside OUT.
#include <string>

namespace moeq {

// `option` names the output (`-o`), `input_what` the input ("the source checkpoint", "--calib").
// Throws moeq::Error on one line naming both paths. An empty input is ignored.
void refuse_output_over_input(const std::string& out, const std::string& option, const std::string& input,
                              const std::string& input_what);

}  // namespace moeq
