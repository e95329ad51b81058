// Placeholder until the data loader and tokenizer land.
#include "calib/dataset.h"

#include "core/error.h"

namespace moeq {
CalibTokens load_calibration_tokens(const CalibDataSpec& spec) {
  throw Error("calibration data: reading '" + spec.path + "' is not implemented yet");
}
}  // namespace moeq
