"""The tiny model of every architecture moeq registers: the one place the Python tests name a
family. Each entry is keyed by the architecture's first model_type (plugins/<family>.cpp),
which is also its directory under TINY_DIR (make_tiny.py writes it; the C++ tests find it
through the registry, tests/tiny_families.h). Adding an architecture adds one entry here.

Per family:
  config      transformers config of the tiny random model (make_tiny.py)
  vllm_fused  shard suffix -> the fused linear vLLM 0.34 loads it into (vllm_conformance.py F1)

Importing this file does not import transformers (tiny_config does).
"""
H, I, E, K, V = 64, 32, 8, 2, 256


def common(**kw):
    base = dict(hidden_size=H, num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=V,
                num_hidden_layers=2, max_position_embeddings=128, tie_word_embeddings=False)
    base.update(kw)
    return base


# vLLM's packed_modules_mapping as most families have it: q/k/v -> qkv_proj, gate/up -> gate_up_proj.
QKV_GATE_UP = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj", "gate_proj": "gate_up_proj",
               "up_proj": "gate_up_proj"}

TINY = {
    "qwen3_moe": dict(
        config=lambda T: T.Qwen3MoeConfig(**common(intermediate_size=96, moe_intermediate_size=I, num_experts=E,
                                                   num_experts_per_tok=K, decoder_sparse_step=1)),
        vllm_fused=QKV_GATE_UP),
    "olmoe": dict(
        config=lambda T: T.OlmoeConfig(**common(intermediate_size=I, num_experts=E, num_experts_per_tok=K)),
        vllm_fused={}),
    "mixtral": dict(
        config=lambda T: T.MixtralConfig(**common(intermediate_size=I, num_local_experts=E, num_experts_per_tok=K)),
        vllm_fused=QKV_GATE_UP),
    "gemma4": dict(
        config=lambda T: T.Gemma4TextConfig(**common(intermediate_size=96, moe_intermediate_size=I, num_experts=E,
                                                     top_k_experts=K, enable_moe_block=True, hidden_size_per_layer_input=0,
                                                     num_global_key_value_heads=2, global_head_dim=16,
                                                     layer_types=["sliding_attention", "full_attention"])),
        vllm_fused=QKV_GATE_UP),
    "deepseek_v3": dict(
        config=lambda T: T.DeepseekV3Config(**common(intermediate_size=96, moe_intermediate_size=I, n_routed_experts=E,
                                                     num_experts_per_tok=K, n_shared_experts=1, first_k_dense_replace=1,
                                                     n_group=2, topk_group=1, q_lora_rank=32, kv_lora_rank=16,
                                                     qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
                                                     num_hidden_layers=3,
                                                     # MLA as real configs have it: head_dim (RoPE's dim) = qk_rope_head_dim,
                                                     # kv heads = heads (transformers' attention repeats k/v otherwise)
                                                     head_dim=8, num_key_value_heads=4)),
        vllm_fused={"q_a_proj": "fused_qkv_a_proj", "kv_a_proj_with_mqa": "fused_qkv_a_proj", "gate_proj": "gate_up_proj",
                    "up_proj": "gate_up_proj"}),
    "gpt_oss": dict(
        config=lambda T: T.GptOssConfig(**common(intermediate_size=I, num_local_experts=E, num_experts_per_tok=K,
                                                 layer_types=["sliding_attention", "full_attention"])),
        vllm_fused=QKV_GATE_UP),
    "glm4_moe": dict(
        config=lambda T: T.Glm4MoeConfig(**common(intermediate_size=96, moe_intermediate_size=I, n_routed_experts=E,
                                                  num_experts_per_tok=K, n_shared_experts=1, first_k_dense_replace=1,
                                                  n_group=1, topk_group=1, num_hidden_layers=3)),
        vllm_fused=QKV_GATE_UP),
    "qwen3_5_moe": dict(
        config=lambda T: T.Qwen3_5MoeTextConfig(**common(moe_intermediate_size=I, shared_expert_intermediate_size=I,
                                                         num_experts=E, num_experts_per_tok=K, num_hidden_layers=4,
                                                         linear_num_key_heads=2, linear_num_value_heads=4,
                                                         linear_key_head_dim=16, linear_value_head_dim=16,
                                                         layer_types=["linear_attention", "linear_attention",
                                                                      "linear_attention", "full_attention"])),
        vllm_fused=dict(QKV_GATE_UP, in_proj_qkv="in_proj_qkvz", in_proj_z="in_proj_qkvz", in_proj_b="in_proj_ba",
                        in_proj_a="in_proj_ba")),
}

FAMILIES = list(TINY)


def tiny_config(fam):
    """The transformers config of family `fam`'s tiny model."""
    import transformers
    return TINY[fam]["config"](transformers)
