#pragma once
// The native forward of an opened model (model/model.h): its site map is reused, not mapped
// again (make_forward in calib/forward.h maps the checkpoint itself).
#include <memory>

#include "calib/forward.h"
#include "model/model.h"

namespace moeq {

std::unique_ptr<MoeForward> make_forward(const Model& model, const ForwardOptions& options);

}  // namespace moeq
