#pragma once
// The embedded default model: a small deterministic Qwen3-MoE checkpoint that moeq writes
// itself (no network, no Python), in both on-disk expert layouts. Same seed, same bytes.
#include <cstdint>
#include <string>

namespace moeq {

struct DemoShape {
  int64_t layers = 4, hidden = 256, experts = 16, top_k = 4, expert_inter = 128, vocab = 512;
  int64_t heads = 4, kv_heads = 2, head_dim = 64;
};

// Writes a checkpoint directory (config.json + model.safetensors) at `dir` (atomically).
// fused: experts as `mlp.experts.gate_up_proj [E, 2I, H]` / `down_proj [E, H, I]`;
// otherwise per expert `mlp.experts.E.{gate,up,down}_proj.weight`.
void write_demo_checkpoint(const std::string& dir, bool fused, const DemoShape& shape, uint64_t seed, bool overwrite);

}  // namespace moeq
