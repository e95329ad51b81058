#pragma once
// An export layout: how one family of consumers expects a quantized checkpoint (ModelOpt HF for
// vLLM / TensorRT-LLM / SGLang, compressed-tensors, bitsandbytes 4-bit). Each lives in its own
// folder export/<layout>/ (writer, reader, scheme) and registers one ExportLayout there; quantize
// (through the recipe's `export:`), verify (through config.json's quant_method) and the fused
// consumer rules ask this registry, so adding a layout never edits a list elsewhere.
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "core/registry.h"
#include "export/reader.h"
#include "export/writer.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "recipe/recipe.h"

namespace moeq {

// Opens an export of this layout for `moeq verify`; qc is config.json's quantization_config.
using OpenExportReader =
    std::function<std::unique_ptr<ExportReader>(const std::string& dir, const nlohmann::json& qc, std::shared_ptr<Checkpoint> ck)>;

struct ExportLayout {
  std::string name;          // the recipe's `export:` value; the registry key
  std::string quant_method;  // config.json quantization_config.quant_method it writes and verify reads
  // Its consumers fuse linears (vLLM, SGLang, TensorRT-LLM): export/fused_consumer_rules.h applies.
  bool fused_consumers = false;
  // How it answers "can you write this plan": check() per site, then the writer's finish().
  std::shared_ptr<const ExportWriter> writer;
  OpenExportReader open_reader;
};

// The layout named `name`, or an Error "unknown export 'name' (known: ...)".
const ExportLayout& export_layout(const std::string& name);

// The layout a recipe's `export:` names; an unknown name is an error naming the recipe file and
// the line of its `export` key (the recipe parser, on the floor below export/, keeps it as data).
const ExportLayout& export_layout_for(const Recipe& recipe);

// The layout that writes quant_method `method`, or nullptr.
const ExportLayout* export_layout_reading(const std::string& method);

// The layout that wrote the export in `dir` (its config.json's quantization_config.quant_method),
// with its reader opened (verify, compare --exports). Errors name the directory and the method.
std::pair<const ExportLayout*, std::unique_ptr<ExportReader>> open_export_reader(const std::string& dir, const ModelConfig& cfg,
                                                                                  std::shared_ptr<Checkpoint> ck);

}  // namespace moeq
