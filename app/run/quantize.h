#pragma once
#include <cstdint>
// `moeq quantize`: plan every site from a recipe, stream tensors from the source
// checkpoint, quantize on the chosen device (expert stacks in one call), and write an
// export for one consumer plus the skipped-layers report. Atomic: OUT.tmp-* then rename.
#include <string>

namespace moeq {

struct QuantizeOptions {
  std::string model, recipe, out, calib;
  std::string device = "cpu";   // cpu | cuda
  bool overwrite = false, strict = false;
  bool weight_only = false;     // override the recipe: no activation quantization
  bool dry_run = false;         // check everything, print the plan (app/run/dry_run.h), write nothing
  uint64_t max_shard_bytes = 5ull << 30;
  // Write each tensor into shard files laid out up front as soon as it is quantized, where
  // the export writer and formats allow it (app/run/export_layout.h); off: buffer each shard
  // and write it when full. The files are the same; tests compare the two.
  bool stream_export = true;
  // Also write moeq's own dequantization of every quantized site (float32, named
  // `<module>.weight`) to DIR/model.safetensors: what a consumer of the export must decode
  // to (the compressed-tensors consumer test compares against it).
  std::string dump_dequant;
};

void quantize_checkpoint(const QuantizeOptions& opt);

}  // namespace moeq
