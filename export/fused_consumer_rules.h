#pragma once
// Plan-level rules of consumers that fuse linears (vLLM, SGLang, TensorRT-LLM reading the
// ModelOpt or compressed-tensors layout), checked before anything is quantized:
//  - a fusion group (model/fusion.h: q/k/v, gate/up, DeepSeek q_a + kv_a, Qwen3.5
//    in_proj_qkv + in_proj_z, in_proj_b + in_proj_a) is one linear there: its members are
//    quantized alike (format, params, activations) or all left unquantized;
//  - a layer's routed experts are one fused MoE there with one scheme (vLLM
//    fused_moe/layer.py; compressed_tensors_moe.py get_moe_method reads expert 0's gate/up/down
//    and refuses differing projections; ModelOpt excludes a layer's MoE only as a whole): every
//    routed expert projection of a layer is quantized alike, or none is.
//  - gpt-oss routed experts are read only in their fused, interleaved form (vLLM gpt_oss.py
//    GptOssModel._load_weights_other copies `.gate_up_proj` / `.down_proj` stacks; per-expert
//    modules are known to its quark path only), which these per-expert exports do not write:
//    quantized gpt-oss experts are refused.
// A plan that breaks any is an error naming the group or layer and the sites that differ.
#include <string>

#include "recipe/recipe.h"

namespace moeq {

// All three, for the export layouts such consumers read (ExportLayout::fused_consumers:
// modelopt, compressed-tensors); nothing for bnb (transformers loads each linear on its own).
void check_fused_consumer_plan(const Plan& plan, const std::string& family, const std::string& export_name);

void require_whole_fusion_groups(const Plan& plan, const std::string& export_name);
void require_whole_moe_layers(const Plan& plan, const std::string& export_name);
void require_loadable_expert_storage(const Plan& plan, const std::string& family, const std::string& export_name);

}  // namespace moeq
