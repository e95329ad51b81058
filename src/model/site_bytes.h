#pragma once
// The bytes a site's weight takes in the checkpoint as stored: a plain weight's dtype size per
// value; an FP8-block source 1 byte per value plus its share of the scale grid; an MXFP4 source
// half a byte per value plus one E8M0 byte per 32. inspect, dry-run, compare and the report all
// count "bytes before" with this.
#include <cstdint>

#include "io/checkpoint.h"
#include "model/site.h"

namespace moeq {

uint64_t stored_bytes(const Checkpoint& ck, const Site& s);

}  // namespace moeq
