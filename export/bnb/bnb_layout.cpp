// bitsandbytes 4-bit (quant_method "bitsandbytes", load_in_4bit), as transformers loads it, one
// linear at a time (so the fused consumer rules do not apply).
#include "export/bnb/bnb_layout.h"

namespace moeq {

MOEQ_REGISTER(ExportLayout, "bnb",
              ExportLayout{"bnb", "bitsandbytes", /*fused_consumers=*/false, make_bnb_writer(), open_bnb_reader});

}  // namespace moeq
