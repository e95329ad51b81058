// llm-compressor's compressed-tensors layout (quant_method "compressed-tensors"), as vLLM and
// transformers load it.
#include "export/compressed_tensors/compressed_tensors_layout.h"

namespace moeq {

MOEQ_REGISTER(ExportLayout, "compressed-tensors",
              ExportLayout{"compressed-tensors", "compressed-tensors", /*fused_consumers=*/true, make_compressed_tensors_writer(),
                           open_compressed_tensors_reader});

}  // namespace moeq
