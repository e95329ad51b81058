// The ModelOpt unified HF layout (quant_method "modelopt"), as vLLM, TensorRT-LLM and SGLang load it.
#include "export/modelopt/modelopt_layout.h"

namespace moeq {

MOEQ_REGISTER(ExportLayout, "modelopt",
              ExportLayout{"modelopt", "modelopt", /*fused_consumers=*/true, make_modelopt_writer(), open_modelopt_reader});

}  // namespace moeq
