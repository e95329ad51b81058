#include "model/demo_checkpoint.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/error.h"
#include "io/atomic_dir.h"
#include "io/safetensors_writer.h"
#include "io/text_file.h"

namespace moeq {
namespace {

// splitmix64: tiny, deterministic across platforms.
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
  double normal() {
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
};

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);  // round to nearest even (inputs are finite)
  return static_cast<uint16_t>(u >> 16);
}

struct Tensor {
  TensorSpec spec;
  std::vector<uint16_t> data;
};

}  // namespace

void write_demo_checkpoint(const std::string& dir, bool fused, const DemoShape& d, uint64_t seed, bool overwrite) {
  Rng rng{seed};
  std::vector<Tensor> ts;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, double std, double mean = 0.0) {
    Tensor t;
    t.spec = TensorSpec{name, DType::BF16, shape};
    int64_t n = 1;
    for (auto s : shape) n *= s;
    t.data.resize(n);
    // A few outliers per tensor, as real checkpoints have: 1 in 4096 values at 8x.
    for (auto& v : t.data) {
      double x = rng.normal() * std;
      if ((rng.next() & 4095) == 0) x *= 8.0;
      v = to_bf16(static_cast<float>(mean + x));
    }
    ts.push_back(std::move(t));
  };
  const int64_t H = d.hidden, I = d.expert_inter, E = d.experts;
  add("model.embed_tokens.weight", {d.vocab, H}, 0.02);
  for (int64_t l = 0; l < d.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {H}, 0.05, 1.0);
    add(p + "post_attention_layernorm.weight", {H}, 0.05, 1.0);
    add(p + "self_attn.q_proj.weight", {d.heads * d.head_dim, H}, 0.02);
    add(p + "self_attn.k_proj.weight", {d.kv_heads * d.head_dim, H}, 0.02);
    add(p + "self_attn.v_proj.weight", {d.kv_heads * d.head_dim, H}, 0.02);
    add(p + "self_attn.o_proj.weight", {H, d.heads * d.head_dim}, 0.02);
    add(p + "self_attn.q_norm.weight", {d.head_dim}, 0.05, 1.0);
    add(p + "self_attn.k_norm.weight", {d.head_dim}, 0.05, 1.0);
    add(p + "mlp.gate.weight", {E, H}, 0.02);
    // The same expert values in both layouts, so the two checkpoints hold identical experts.
    std::vector<Tensor> gate, up, down;
    for (int64_t e = 0; e < E; ++e) {
      const std::string x = p + "mlp.experts." + std::to_string(e) + ".";
      add(x + "gate_proj.weight", {I, H}, 0.02);
      add(x + "up_proj.weight", {I, H}, 0.02);
      add(x + "down_proj.weight", {H, I}, 0.02);
    }
    if (fused) {
      Tensor gu{{p + "mlp.experts.gate_up_proj", DType::BF16, {E, 2 * I, H}}, {}};
      Tensor dn{{p + "mlp.experts.down_proj", DType::BF16, {E, H, I}}, {}};
      const size_t first = ts.size() - 3 * E;
      for (int64_t e = 0; e < E; ++e) {
        const auto& g = ts[first + 3 * e].data;
        const auto& u = ts[first + 3 * e + 1].data;
        const auto& dd = ts[first + 3 * e + 2].data;
        gu.data.insert(gu.data.end(), g.begin(), g.end());  // gate rows first, then up rows
        gu.data.insert(gu.data.end(), u.begin(), u.end());
        dn.data.insert(dn.data.end(), dd.begin(), dd.end());
      }
      ts.resize(first);
      ts.push_back(std::move(gu));
      ts.push_back(std::move(dn));
    }
  }
  add("model.norm.weight", {H}, 0.05, 1.0);
  add("lm_head.weight", {d.vocab, H}, 0.02);

  AtomicDir out(dir, overwrite);
  std::vector<TensorSpec> specs;
  for (const auto& t : ts) specs.push_back(t.spec);
  SafetensorsWriter w(out.path(), specs, /*max_shard_bytes=*/8ull << 20, {{"format", "pt"}});
  for (const auto& t : ts) w.write(t.spec.name, t.data.data(), t.data.size() * 2);
  w.finish();
  nlohmann::ordered_json cfg = {
      {"architectures", {"Qwen3MoeForCausalLM"}}, {"model_type", "qwen3_moe"}, {"hidden_size", H},
      {"intermediate_size", 3 * H}, {"moe_intermediate_size", I}, {"num_hidden_layers", d.layers},
      {"num_attention_heads", d.heads}, {"num_key_value_heads", d.kv_heads}, {"head_dim", d.head_dim},
      {"num_experts", E}, {"num_experts_per_tok", d.top_k}, {"norm_topk_prob", true}, {"decoder_sparse_step", 1},
      {"mlp_only_layers", nlohmann::json::array()}, {"vocab_size", d.vocab}, {"hidden_act", "silu"},
      {"rms_norm_eps", 1e-6}, {"rope_theta", 1000000.0}, {"max_position_embeddings", 4096},
      {"tie_word_embeddings", false}, {"torch_dtype", "bfloat16"}, {"moeq_demo", {{"seed", seed}, {"fused", fused}}}};
  write_text_file(out.path() + "/config.json", cfg.dump(2) + "\n");
  out.commit();
}

}  // namespace moeq
