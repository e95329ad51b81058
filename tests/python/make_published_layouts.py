#!/usr/bin/env python3
"""Writes small checkpoints laid out as the published ones sit on disk: tensor names, dtypes,
config.json structure and spellings, index and shard naming, side folders; dimensions scaled
down (hidden 128, experts 8, top-2, vocab 256; every input dim a multiple of 128 so every
shipped recipe applies). The weights are seeded random (values do not matter here: what is
tested is that moeq claims, quantizes, copies and verifies every tensor of these layouts).

Layouts (OUT/<name>/):
  glm4_5_air       GLM-4.5-Air: MTP layer model.layers.{num_hidden_layers} with eh_proj, enorm,
                   hnorm, shared_head.{head,norm} and its own embed_tokens; rope_scaling null +
                   rope_theta + partial_rotary_factor, torch_dtype; 1-based 5-digit shards
  glm4_5           GLM-4.5: the same MTP layer without embed_tokens, QK norm (use_qk_norm)
  deepseek_v3_bf16 DeepSeek-V3 as bf16 (no quantization_config): MLA, MTP layer 61 ->
                   num_hidden_layers, rope_scaling with legacy `type: yarn`, 6-digit totals
                   (model-00001-of-000163 style), a layer's experts straddling two shards
  qwen3_next       Qwen3-Next-80B-A3B: full_attention_interval without layer_types, per-expert
                   trunk, top-level mtp.* tree, in_proj_qkvz / in_proj_ba linear attention
  qwen3_5_moe      Qwen3.5-35B-A3B: Qwen3_5MoeForConditionalGeneration wrapper (text_config,
                   rope_parameters, dtype, mtp_num_hidden_layers), fused trunk experts under
                   model.language_model, per-expert mtp.* tree, model.visual.* tower
  gemma4_it        Gemma-4-26B-A4B-it: model.language_model.* wrapper, no lm_head (tied),
                   full-attention layers without v_proj (attention_k_eq_v), vision tower with
                   Gemma4ClippableLinear `.linear.weight`, embed_vision
  gpt_oss_bf16     gpt-oss-20b's shard naming (zero-based: model-00000-of-00002 ..
                   model-00002-of-00002) with an original/ and a metal/ side folder that must
                   be ignored; experts as bf16 (the MXFP4 form is make_published_quantized.py's)
  gpt_oss_single   the same as one model.safetensors without an index, beside original/

Each directory also gets layout.json: what the test expects (MTP and tower tensor names,
expert count, published source of the facts, whether moeq's native forward runs it).

Usage: make_published_layouts.py OUT [LAYOUT ...]
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

H, E, K, V, I = 128, 8, 2, 256, 128  # hidden, experts, top-k, vocab, expert width
BF16, F32 = torch.bfloat16, torch.float32


class Tensors:
    """Ordered name -> tensor, seeded per layout."""

    def __init__(self, seed):
        self.t = {}
        self.g = torch.Generator().manual_seed(seed)

    def lin(self, name, *shape, dtype=BF16):
        assert name not in self.t, name
        self.t[name] = (torch.randn(*shape, generator=self.g) * 0.05).to(dtype)

    def ones(self, name, *shape, dtype=BF16):
        assert name not in self.t, name
        self.t[name] = (1 + 0.01 * torch.randn(*shape, generator=self.g)).to(dtype)


def write(out, name, cfg, t, shards, facts, side_folders=False, index=True):
    """shards: list of (file name, predicate on tensor name, in order: first match wins)."""
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.endswith(".safetensors") or f.endswith(".json"):
            os.remove(os.path.join(d, f))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    groups = {fn: {} for fn, _ in shards}
    weight_map = {}
    for n, v in t.t.items():
        fn = next(fn for fn, pred in shards if pred(n))
        groups[fn][n] = v.contiguous()
        weight_map[n] = fn
    for fn, g in groups.items():
        assert g, f"{name}: shard {fn} would be empty"
        save_file(g, os.path.join(d, fn), metadata={"format": "pt"})
    if index:
        total = sum(v.numel() * v.element_size() for v in t.t.values())
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
    if side_folders:
        # openai/gpt-oss-20b ships original/ (the checkpoint in OpenAI's own naming:
        # original/config.json, original/dtypes.json, original/model.safetensors) and
        # metal/model.bin beside the transformers checkpoint; readers of the HF layout ignore them.
        os.makedirs(os.path.join(d, "original"), exist_ok=True)
        os.makedirs(os.path.join(d, "metal"), exist_ok=True)
        save_file({"block.0.attn.qkv.weight": torch.zeros(8, 8, dtype=BF16),
                   "embedding.weight": torch.zeros(8, 8, dtype=BF16)},
                  os.path.join(d, "original", "model.safetensors"))
        with open(os.path.join(d, "original", "config.json"), "w") as f:
            json.dump({"num_hidden_layers": 1, "hidden_size": 8}, f)
        with open(os.path.join(d, "original", "dtypes.json"), "w") as f:
            json.dump({"block.0.attn.qkv.weight": "BF16"}, f)
        with open(os.path.join(d, "metal", "model.bin"), "wb") as f:
            f.write(b"\0" * 64)
    facts["tensors"] = len(t.t)
    with open(os.path.join(d, "layout.json"), "w") as f:
        json.dump(facts, f, indent=2)


def sigmoid_moe_mlp(t, m, dense, dense_i):
    """GLM-4.5's and DeepSeek-V3's MLP: a dense MLP in the leading layers, else a sigmoid router
    (gate.weight + F32 e_score_correction_bias), per-expert experts and one shared expert."""
    if dense:
        t.lin(m + "gate_proj.weight", dense_i, H)
        t.lin(m + "up_proj.weight", dense_i, H)
        t.lin(m + "down_proj.weight", H, dense_i)
        return
    t.lin(m + "gate.weight", E, H)
    t.lin(m + "gate.e_score_correction_bias", E, dtype=F32)
    for e in range(E):
        t.lin(f"{m}experts.{e}.gate_proj.weight", I, H)
        t.lin(f"{m}experts.{e}.up_proj.weight", I, H)
        t.lin(f"{m}experts.{e}.down_proj.weight", H, I)
    for proj, shape in (("gate_proj", (I, H)), ("up_proj", (I, H)), ("down_proj", (H, I))):
        t.lin(f"{m}shared_experts.{proj}.weight", *shape)


# ---- GLM-4.5 / GLM-4.5-Air -------------------------------------------------------------
# Names and dtypes: zai-org/GLM-4.5-Air and zai-org/GLM-4.5 model.safetensors.index.json and
# shard headers as published (model.layers.46.* / model.layers.92.* is the MTP layer:
# eh_proj, enorm, hnorm, shared_head.head, shared_head.norm; GLM-4.5-Air's also carries
# embed_tokens), e_score_correction_bias in F32, the rest BF16. transformers 5.17
# (models/glm4_moe/modeling_glm4_moe.py) ignores `model\.layers\.46.*` / `92.*` on load and
# builds q/k/v with bias (attention_bias), o_proj without, q_norm/k_norm when use_qk_norm.
def glm_layer(t, p, dense, qk_norm, nh=4, kvh=2, hd=32, dense_i=256):
    t.ones(p + "input_layernorm.weight", H)
    t.ones(p + "post_attention_layernorm.weight", H)
    a = p + "self_attn."
    for proj, out in (("q_proj", nh * hd), ("k_proj", kvh * hd), ("v_proj", kvh * hd)):
        t.lin(a + proj + ".weight", out, H)
        t.lin(a + proj + ".bias", out)
    t.lin(a + "o_proj.weight", H, nh * hd)
    if qk_norm:
        t.ones(a + "q_norm.weight", hd)
        t.ones(a + "k_norm.weight", hd)
    sigmoid_moe_mlp(t, p + "mlp.", dense, dense_i)


def nextn_extras(t, p, embed):
    """The MTP layer's own tensors (DeepSeek-V3 / GLM-4.5): eh_proj [H, 2H] (projects
    concat(enorm(embed), hnorm(hidden))), enorm, hnorm, shared_head.norm, shared_head.head [V, H]."""
    if embed:
        t.lin(p + "embed_tokens.weight", V, H)
    t.ones(p + "enorm.weight", H)
    t.ones(p + "hnorm.weight", H)
    t.lin(p + "eh_proj.weight", H, 2 * H)
    t.ones(p + "shared_head.norm.weight", H)
    t.lin(p + "shared_head.head.weight", V, H)


def glm(out, air):
    layers, dense = (2, 1) if air else (3, 1)
    t = Tensors(11 if air else 12)
    t.lin("model.embed_tokens.weight", V, H)
    for i in range(layers):
        glm_layer(t, f"model.layers.{i}.", i < dense, qk_norm=not air)
    glm_layer(t, f"model.layers.{layers}.", False, qk_norm=not air)
    nextn_extras(t, f"model.layers.{layers}.", embed=air)
    t.ones("model.norm.weight", H)
    t.lin("lm_head.weight", V, H)
    # config.json as published (GLM-4.5-Air: hidden 4096, 46 layers, 128 experts, top-8,
    # moe_intermediate_size 1408, first_k_dense_replace 1; GLM-4.5: 5120, 92, 160, 1536, 3,
    # use_qk_norm true), transformers-4.x spellings: rope_scaling null, torch_dtype.
    cfg = {
        "architectures": ["Glm4MoeForCausalLM"], "model_type": "glm4_moe", "attention_bias": True,
        "attention_dropout": 0.0, "head_dim": 32, "hidden_act": "silu", "hidden_size": H,
        "partial_rotary_factor": 0.5, "initializer_range": 0.02, "intermediate_size": 256,
        "max_position_embeddings": 256, "moe_intermediate_size": I, "norm_topk_prob": True,
        "num_attention_heads": 4, "n_group": 1, "topk_group": 1, "n_routed_experts": E,
        "n_shared_experts": 1, "routed_scaling_factor": 1.0 if air else 2.5, "num_experts_per_tok": K,
        "first_k_dense_replace": dense, "num_hidden_layers": layers, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 1000000, "num_nextn_predict_layers": 1,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.54.0",
        "use_cache": True, "use_qk_norm": not air, "vocab_size": V,
    }
    n = 3  # model-0000N-of-00003: 1-based, 5 digits; the MTP layer in the last shard
    shards = [(f"model-00003-of-0000{n}.safetensors", lambda s: s.startswith(f"model.layers.{layers}.")),
              (f"model-00001-of-0000{n}.safetensors", lambda s: s.startswith("model.layers.0.") or s == "model.embed_tokens.weight"),
              (f"model-00002-of-0000{n}.safetensors", lambda s: True)]
    name = "glm4_5_air" if air else "glm4_5"
    mtp = sorted(k for k in t.t if k.startswith(f"model.layers.{layers}."))
    write(out, name, cfg, t, shards, {
        "model": "zai-org/GLM-4.5-Air" if air else "zai-org/GLM-4.5", "experts": E, "moe_layers": layers - dense,
        "mtp_tensors": mtp, "tower_tensors": [], "mtp_layers": [layers], "forward": True})


# ---- DeepSeek-V3 (bf16) ------------------------------------------------------------------
# deepseek-ai/DeepSeek-V3 model.safetensors.index.json: 163 shards named
# model-00001-of-000163.safetensors (6-digit total), MTP layer model.layers.61 (= num_hidden_layers)
# in model-00163-of-000163 with embed_tokens, enorm, hnorm, eh_proj [7168, 14336],
# shared_head.norm, shared_head.head [129280, 7168] beside a full MoE layer; transformers 5.17
# (modeling_deepseek_v3.py) ignores `model\.layers\.61.*`. The published weights are FP8
# block-quantized; this is the bf16 form (as DeepSeek's fp8_cast_bf16.py writes it: the same
# names without weight_scale_inv, no quantization_config). Config as published: rope_scaling
# with the legacy `type: yarn` key, torch_dtype, n_routed_experts, num_nextn_predict_layers 1.
def deepseek_layer(t, p, dense, nh=4, qlr=128, kvlr=128, nope=32, rope=16, vd=32, dense_i=256):
    t.ones(p + "input_layernorm.weight", H)
    t.ones(p + "post_attention_layernorm.weight", H)
    a = p + "self_attn."
    t.lin(a + "q_a_proj.weight", qlr, H)
    t.ones(a + "q_a_layernorm.weight", qlr)
    t.lin(a + "q_b_proj.weight", nh * (nope + rope), qlr)
    t.lin(a + "kv_a_proj_with_mqa.weight", kvlr + rope, H)
    t.ones(a + "kv_a_layernorm.weight", kvlr)
    t.lin(a + "kv_b_proj.weight", nh * (nope + vd), kvlr)
    t.lin(a + "o_proj.weight", H, nh * vd)
    sigmoid_moe_mlp(t, p + "mlp.", dense, dense_i)


def deepseek_v3(out):
    layers, dense = 2, 1
    t = Tensors(13)
    t.lin("model.embed_tokens.weight", V, H)
    for i in range(layers):
        deepseek_layer(t, f"model.layers.{i}.", i < dense)
    deepseek_layer(t, f"model.layers.{layers}.", False)
    nextn_extras(t, f"model.layers.{layers}.", embed=True)
    t.ones("model.norm.weight", H)
    t.lin("lm_head.weight", V, H)
    cfg = {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "attention_bias": False,
        "attention_dropout": 0.0, "bos_token_id": 0, "eos_token_id": 1, "ep_size": 1, "first_k_dense_replace": dense,
        "hidden_act": "silu", "hidden_size": H, "initializer_range": 0.02, "intermediate_size": 256,
        "kv_lora_rank": 128, "max_position_embeddings": 256, "moe_intermediate_size": I, "moe_layer_freq": 1,
        "n_group": 2, "n_routed_experts": E, "n_shared_experts": 1, "norm_topk_prob": True,
        "num_attention_heads": 4, "num_experts_per_tok": K, "num_hidden_layers": layers, "num_key_value_heads": 4,
        "num_nextn_predict_layers": 1, "q_lora_rank": 128, "qk_nope_head_dim": 32, "qk_rope_head_dim": 16,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 4, "mscale": 1.0, "mscale_all_dim": 1.0,
                         "original_max_position_embeddings": 64, "type": "yarn"},
        "rope_theta": 10000, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid", "tie_word_embeddings": False,
        "topk_group": 1, "topk_method": "noaux_tc", "torch_dtype": "bfloat16", "transformers_version": "4.33.1",
        "use_cache": True, "v_head_dim": 32, "vocab_size": V,
    }
    # Layer 1's experts straddle shards 1 and 2 (experts 0-3 | 4-7), as the published shards
    # cut through layers; the MTP layer sits in the last shard.
    def first(s):
        if s.startswith("model.layers.1.mlp.experts."):
            return int(s.split(".")[5]) < 4
        return s.startswith("model.layers.0.") or s == "model.embed_tokens.weight" or s.startswith("model.layers.1.self_attn.")
    shards = [("model-00003-of-000003.safetensors", lambda s: s.startswith(f"model.layers.{layers}.")),
              ("model-00001-of-000003.safetensors", first),
              ("model-00002-of-000003.safetensors", lambda s: True)]
    mtp = sorted(k for k in t.t if k.startswith(f"model.layers.{layers}."))
    write(out, "deepseek_v3_bf16", cfg, t, shards, {
        "model": "deepseek-ai/DeepSeek-V3 (bf16 form)", "experts": E, "moe_layers": layers - dense,
        "mtp_tensors": mtp, "tower_tensors": [], "mtp_layers": [layers], "straddling_layer": 1, "forward": True})


# ---- Qwen3-Next / Qwen3.5 ----------------------------------------------------------------
# Qwen/Qwen3-Next-80B-A3B-Instruct: model.safetensors.index.json (model-00001-of-00041 ...),
# linear-attention layers with linear_attn.{in_proj_qkvz, in_proj_ba, conv1d, A_log, dt_bias,
# norm, out_proj}, every 4th layer full attention with a gated q_proj (2 x heads x head_dim),
# per-expert mlp.experts.{E}.*_proj, mlp.shared_expert.* + mlp.shared_expert_gate [1, H], and
# the MTP head mtp.fc, mtp.pre_fc_norm_{embedding,hidden}, mtp.norm, mtp.layers.0.* (full
# attention, per-expert MoE). config.json has full_attention_interval 4 and no layer_types
# (transformers 5.17 configuration_qwen3_next.py derives them), rope_scaling null, torch_dtype.
# Qwen/Qwen3.5-35B-A3B: Qwen3_5MoeForConditionalGeneration; the text model under
# model.language_model.* with fused experts (mlp.experts.gate_up_proj [E, 2I, H],
# mlp.experts.down_proj [E, H, I]), linear_attn.{in_proj_qkv, in_proj_z, in_proj_a, in_proj_b},
# lm_head.weight at top level, the vision encoder model.visual.{patch_embed, pos_embed,
# blocks.N.{attn.qkv, attn.proj, mlp.linear_fc1, mlp.linear_fc2, norm1, norm2}, merger.*}, and the
# same mtp.* tree, per expert; config.json with text_config (rope_parameters, layer_types,
# mtp_num_hidden_layers 1) and vision_config, `dtype` (transformers 5 spelling).
KH, VH, DK, DV, CONV = 2, 4, 32, 32, 4  # linear-attention key/value heads and dims, conv kernel


def qwen_moe_mlp(t, m, fused):
    t.lin(m + "gate.weight", E, H)
    if fused:
        t.lin(m + "experts.gate_up_proj", E, 2 * I, H)
        t.lin(m + "experts.down_proj", E, H, I)
    else:
        for e in range(E):
            t.lin(f"{m}experts.{e}.gate_proj.weight", I, H)
            t.lin(f"{m}experts.{e}.up_proj.weight", I, H)
            t.lin(f"{m}experts.{e}.down_proj.weight", H, I)
    for proj, shape in (("gate_proj", (I, H)), ("up_proj", (I, H)), ("down_proj", (H, I))):
        t.lin(f"{m}shared_expert.{proj}.weight", *shape)
    t.lin(m + "shared_expert_gate.weight", 1, H)


def qwen_full_attn(t, a, nh=4, kvh=2, hd=32):
    t.lin(a + "q_proj.weight", 2 * nh * hd, H)  # query and its output gate
    t.lin(a + "k_proj.weight", kvh * hd, H)
    t.lin(a + "v_proj.weight", kvh * hd, H)
    t.lin(a + "o_proj.weight", H, nh * hd)
    t.ones(a + "q_norm.weight", hd)
    t.ones(a + "k_norm.weight", hd)


def qwen_layer(t, p, full, fused, next_style):
    t.ones(p + "input_layernorm.weight", H)
    t.ones(p + "post_attention_layernorm.weight", H)
    if full:
        qwen_full_attn(t, p + "self_attn.")
    else:
        a = p + "linear_attn."
        if next_style:
            t.lin(a + "in_proj_qkvz.weight", 2 * KH * DK + 2 * VH * DV, H)
            t.lin(a + "in_proj_ba.weight", 2 * VH, H)
        else:
            t.lin(a + "in_proj_qkv.weight", 2 * KH * DK + VH * DV, H)
            t.lin(a + "in_proj_z.weight", VH * DV, H)
            t.lin(a + "in_proj_b.weight", VH, H)
            t.lin(a + "in_proj_a.weight", VH, H)
        t.lin(a + "conv1d.weight", 2 * KH * DK + VH * DV, 1, CONV)
        t.ones(a + "A_log", VH)
        t.ones(a + "dt_bias", VH)
        t.ones(a + "norm.weight", DV)
        t.lin(a + "out_proj.weight", H, VH * DV)
    qwen_moe_mlp(t, p + "mlp.", fused)


def qwen_mtp(t):
    t.lin("mtp.fc.weight", H, 2 * H)
    t.ones("mtp.pre_fc_norm_embedding.weight", H)
    t.ones("mtp.pre_fc_norm_hidden.weight", H)
    t.ones("mtp.norm.weight", H)
    qwen_layer(t, "mtp.layers.0.", full=True, fused=False, next_style=False)


def qwen_text_cfg(layers):
    return {"hidden_size": H, "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": 32, "vocab_size": V, "intermediate_size": 256, "moe_intermediate_size": I,
            "shared_expert_intermediate_size": I, "num_experts": E, "num_experts_per_tok": K,
            "norm_topk_prob": True, "decoder_sparse_step": 1, "mlp_only_layers": [], "hidden_act": "silu",
            "rms_norm_eps": 1e-06, "max_position_embeddings": 256, "linear_conv_kernel_dim": CONV,
            "linear_key_head_dim": DK, "linear_num_key_heads": KH, "linear_num_value_heads": VH,
            "linear_value_head_dim": DV, "attention_bias": False, "attention_dropout": 0.0,
            "tie_word_embeddings": False}


def qwen3_next(out):
    layers = 4
    t = Tensors(14)
    t.lin("model.embed_tokens.weight", V, H)
    for i in range(layers):
        qwen_layer(t, f"model.layers.{i}.", full=(i + 1) % 4 == 0, fused=False, next_style=True)
    t.ones("model.norm.weight", H)
    t.lin("lm_head.weight", V, H)
    qwen_mtp(t)
    cfg = dict(qwen_text_cfg(layers), architectures=["Qwen3NextForCausalLM"], model_type="qwen3_next",
               full_attention_interval=4, partial_rotary_factor=0.25, rope_scaling=None, rope_theta=10000000,
               torch_dtype="bfloat16", transformers_version="4.57.0.dev0", use_cache=True)
    shards = [("model-00001-of-00002.safetensors", lambda s: s.startswith(("model.embed_tokens", "model.layers.0.", "model.layers.1."))),
              ("model-00002-of-00002.safetensors", lambda s: True)]
    write(out, "qwen3_next", cfg, t, shards, {
        "model": "Qwen/Qwen3-Next-80B-A3B-Instruct", "experts": E, "moe_layers": layers,
        "mtp_tensors": sorted(k for k in t.t if k.startswith("mtp.")), "tower_tensors": [], "mtp_layers": [layers]})


def qwen3_5_moe(out):
    layers = 4
    t = Tensors(15)
    p = "model.language_model."
    t.lin(p + "embed_tokens.weight", V, H)
    layer_types = ["linear_attention" if (i + 1) % 4 else "full_attention" for i in range(layers)]
    for i in range(layers):
        qwen_layer(t, f"{p}layers.{i}.", full=layer_types[i] == "full_attention", fused=True, next_style=False)
    t.ones(p + "norm.weight", H)
    t.lin("lm_head.weight", V, H)
    qwen_mtp(t)
    VD = 64  # vision width
    t.lin("model.visual.patch_embed.proj.weight", VD, 3, 2, 16, 16)
    t.lin("model.visual.patch_embed.proj.bias", VD)
    t.lin("model.visual.pos_embed.weight", 64, VD)
    for b in range(2):
        q = f"model.visual.blocks.{b}."
        t.ones(q + "norm1.weight", VD); t.lin(q + "norm1.bias", VD)
        t.ones(q + "norm2.weight", VD); t.lin(q + "norm2.bias", VD)
        t.lin(q + "attn.qkv.weight", 3 * VD, VD); t.lin(q + "attn.qkv.bias", 3 * VD)
        t.lin(q + "attn.proj.weight", VD, VD); t.lin(q + "attn.proj.bias", VD)
        t.lin(q + "mlp.linear_fc1.weight", 4 * VD, VD); t.lin(q + "mlp.linear_fc1.bias", 4 * VD)
        t.lin(q + "mlp.linear_fc2.weight", VD, 4 * VD); t.lin(q + "mlp.linear_fc2.bias", VD)
    t.ones("model.visual.merger.norm.weight", VD); t.lin("model.visual.merger.norm.bias", VD)
    t.lin("model.visual.merger.linear_fc1.weight", 4 * VD, 4 * VD); t.lin("model.visual.merger.linear_fc1.bias", 4 * VD)
    t.lin("model.visual.merger.linear_fc2.weight", H, 4 * VD); t.lin("model.visual.merger.linear_fc2.bias", H)
    text = dict(qwen_text_cfg(layers), model_type="qwen3_5_moe_text", layer_types=layer_types,
                mtp_num_hidden_layers=1, mtp_use_dedicated_embeddings=False, dtype="bfloat16",
                rope_parameters={"rope_type": "default", "rope_theta": 10000000, "partial_rotary_factor": 0.25,
                                 "mrope_interleaved": True, "mrope_section": [2, 1, 1]})
    cfg = {"architectures": ["Qwen3_5MoeForConditionalGeneration"], "model_type": "qwen3_5_moe",
           "text_config": text, "tie_word_embeddings": False, "dtype": "bfloat16", "transformers_version": "5.2.0",
           "vision_config": {"model_type": "qwen3_5_moe", "depth": 2, "hidden_size": VD, "num_heads": 4,
                             "intermediate_size": 4 * VD, "out_hidden_size": H, "patch_size": 16,
                             "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3}}
    shards = [("model-00001-of-00002.safetensors", lambda s: s.startswith((p + "embed_tokens", p + "layers.0.", p + "layers.1.", "model.visual."))),
              ("model-00002-of-00002.safetensors", lambda s: True)]
    write(out, "qwen3_5_moe", cfg, t, shards, {
        "model": "Qwen/Qwen3.5-35B-A3B", "experts": E, "moe_layers": layers,
        "mtp_tensors": sorted(k for k in t.t if k.startswith("mtp.")),
        "tower_tensors": sorted(k for k in t.t if k.startswith("model.visual.")), "mtp_layers": [layers],
        "forward": True})


# ---- Gemma-4-26B-A4B-it ------------------------------------------------------------------
# google/gemma-4-26b-a4b-it: Gemma4ForConditionalGeneration; text under model.language_model.*
# (no lm_head: tie_word_embeddings), every layer a dense mlp beside fused experts
# (experts.gate_up_proj [E, 2I, H], experts.down_proj [E, H, I]), router.{proj.weight, scale,
# per_expert_scale}, layer_scalar; full-attention layers have no v_proj (attention_k_eq_v);
# the vision tower's linears are Gemma4ClippableLinear, stored as `<name>.linear.weight`
# (transformers 5.17 models/gemma4/modeling_gemma4.py), plus model.embed_vision.*.
def gemma4(out):
    layers = 2
    t = Tensors(16)
    p = "model.language_model."
    t.lin(p + "embed_tokens.weight", V, H)
    types = ["sliding_attention", "full_attention"]
    for i in range(layers):
        q = f"{p}layers.{i}."
        hd = 32 if types[i] == "sliding_attention" else 64
        a = q + "self_attn."
        t.lin(a + "q_proj.weight", 4 * hd, H)
        t.lin(a + "k_proj.weight", 2 * hd, H)
        if types[i] == "sliding_attention":
            t.lin(a + "v_proj.weight", 2 * hd, H)
        t.lin(a + "o_proj.weight", H, 4 * hd)
        t.ones(a + "q_norm.weight", hd)
        t.ones(a + "k_norm.weight", hd)
        for n in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                  "post_feedforward_layernorm", "pre_feedforward_layernorm_2", "post_feedforward_layernorm_1",
                  "post_feedforward_layernorm_2"):
            t.ones(q + n + ".weight", H)
        t.ones(q + "layer_scalar", 1)
        t.lin(q + "mlp.gate_proj.weight", 256, H)
        t.lin(q + "mlp.up_proj.weight", 256, H)
        t.lin(q + "mlp.down_proj.weight", H, 256)
        t.lin(q + "experts.gate_up_proj", E, 2 * I, H)
        t.lin(q + "experts.down_proj", E, H, I)
        t.lin(q + "router.proj.weight", E, H)
        t.ones(q + "router.scale", H)
        t.ones(q + "router.per_expert_scale", E)
    t.ones(p + "norm.weight", H)
    VD = 64
    v = "model.vision_tower."
    t.lin(v + "patch_embedder.input_proj.weight", VD, 3 * 16 * 16)
    t.ones(v + "patch_embedder.position_embedding_table", 2, 16, VD)
    for b in range(2):
        q = f"{v}encoder.layers.{b}."
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            t.lin(q + f"self_attn.{proj}.linear.weight", VD, VD)
        t.ones(q + "self_attn.q_norm.weight", 16)
        t.ones(q + "self_attn.k_norm.weight", 16)
        t.lin(q + "mlp.gate_proj.linear.weight", 2 * VD, VD)
        t.lin(q + "mlp.up_proj.linear.weight", 2 * VD, VD)
        t.lin(q + "mlp.down_proj.linear.weight", VD, 2 * VD)
        for n in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"):
            t.ones(q + n + ".weight", VD)
    t.lin("model.embed_vision.embedding_projection.weight", H, VD)
    text = {"model_type": "gemma4_text", "hidden_size": H, "num_hidden_layers": layers, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 32, "global_head_dim": 64, "num_global_key_value_heads": 2,
            "attention_k_eq_v": True, "vocab_size": V, "intermediate_size": 256, "moe_intermediate_size": I,
            "num_experts": E, "top_k_experts": K, "enable_moe_block": True, "layer_types": types,
            "hidden_size_per_layer_input": 0, "sliding_window": 64, "max_position_embeddings": 256,
            "rms_norm_eps": 1e-06, "tie_word_embeddings": True, "final_logit_softcapping": 30.0,
            "rope_parameters": {"full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                                   "rope_theta": 1000000.0},
                                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
            "dtype": "bfloat16"}
    cfg = {"architectures": ["Gemma4ForConditionalGeneration"], "model_type": "gemma4", "text_config": text,
           "vision_config": {"model_type": "gemma4_vision", "hidden_size": VD, "num_hidden_layers": 2},
           "audio_config": None, "tie_word_embeddings": True, "dtype": "bfloat16", "transformers_version": "5.5.0"}
    shards = [("model-00001-of-00002.safetensors", lambda s: s.startswith((p + "embed_tokens", p + "layers.0.", v))),
              ("model-00002-of-00002.safetensors", lambda s: True)]
    write(out, "gemma4_it", cfg, t, shards, {
        "model": "google/gemma-4-26b-a4b-it", "experts": E, "moe_layers": layers, "mtp_tensors": [],
        "tower_tensors": sorted(k for k in t.t if k.startswith((v, "model.embed_vision."))), "mtp_layers": []})


# ---- gpt-oss shard naming and side folders ------------------------------------------------
# openai/gpt-oss-20b: model-00000-of-00002, model-00001-of-00002, model-00002-of-00002
# (zero-based, three files for a total of "00002"), original/ and metal/ beside them; config
# with num_local_experts, experts_per_token, intermediate_size as the expert width (no
# moe_intermediate_size), layer_types, rope_scaling {rope_type: yarn, ...}, torch_dtype.
# The experts here are bf16 in transformers' GptOssExperts layout (gate_up_proj [E, H, 2I]
# interleaved, down_proj [E, I, H], biases), the published MXFP4 form being another generator's.
def gpt_oss(out, single):
    layers = 2
    t = Tensors(17)
    t.lin("model.embed_tokens.weight", V, H)
    for i in range(layers):
        q = f"model.layers.{i}."
        a = q + "self_attn."
        for proj, o in (("q_proj", 4 * 32), ("k_proj", 2 * 32), ("v_proj", 2 * 32)):
            t.lin(a + proj + ".weight", o, H)
            t.lin(a + proj + ".bias", o)
        t.lin(a + "o_proj.weight", H, 4 * 32)
        t.lin(a + "o_proj.bias", H)
        t.lin(a + "sinks", 4, dtype=BF16)
        t.ones(q + "input_layernorm.weight", H)
        t.ones(q + "post_attention_layernorm.weight", H)
        t.lin(q + "mlp.router.weight", E, H)
        t.lin(q + "mlp.router.bias", E)
        t.lin(q + "mlp.experts.gate_up_proj", E, H, 2 * I)
        t.lin(q + "mlp.experts.gate_up_proj_bias", E, 2 * I)
        t.lin(q + "mlp.experts.down_proj", E, I, H)
        t.lin(q + "mlp.experts.down_proj_bias", E, H)
    t.ones("model.norm.weight", H)
    t.lin("lm_head.weight", V, H)
    cfg = {"architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "attention_bias": True,
           "attention_dropout": 0.0, "experts_per_token": K, "head_dim": 32, "hidden_act": "silu", "hidden_size": H,
           "initializer_range": 0.02, "intermediate_size": I, "layer_types": ["sliding_attention", "full_attention"],
           "max_position_embeddings": 256, "num_attention_heads": 4, "num_experts_per_tok": K,
           "num_hidden_layers": layers, "num_key_value_heads": 2, "num_local_experts": E, "rms_norm_eps": 1e-05,
           "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 4.0, "original_max_position_embeddings": 64,
                            "rope_type": "yarn", "truncate": False},
           "rope_theta": 150000, "router_aux_loss_coef": 0.9, "sliding_window": 64, "swiglu_limit": 7.0,
           "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.55.0.dev0",
           "use_cache": True, "vocab_size": V}
    if single:
        write(out, "gpt_oss_single", cfg, t, [("model.safetensors", lambda s: True)], {
            "model": "openai/gpt-oss-20b (bf16 experts, one file)", "experts": E, "moe_layers": layers,
            "mtp_tensors": [], "tower_tensors": [], "mtp_layers": []}, side_folders=True, index=False)
        return
    shards = [("model-00000-of-00002.safetensors", lambda s: s.startswith(("model.embed_tokens", "model.layers.0.self_attn"))),
              ("model-00001-of-00002.safetensors", lambda s: s.startswith("model.layers.0.")),
              ("model-00002-of-00002.safetensors", lambda s: True)]
    write(out, "gpt_oss_bf16", cfg, t, shards, {
        "model": "openai/gpt-oss-20b (bf16 experts)", "experts": E, "moe_layers": layers, "mtp_tensors": [],
        "tower_tensors": [], "mtp_layers": []}, side_folders=True)


LAYOUTS = {
    "glm4_5_air": lambda o: glm(o, air=True),
    "glm4_5": lambda o: glm(o, air=False),
    "deepseek_v3_bf16": deepseek_v3,
    "qwen3_next": qwen3_next,
    "qwen3_5_moe": qwen3_5_moe,
    "gemma4_it": gemma4,
    "gpt_oss_bf16": lambda o: gpt_oss(o, single=False),
    "gpt_oss_single": lambda o: gpt_oss(o, single=True),
}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    names = sys.argv[2:] or list(LAYOUTS)
    for n in names:
        if n not in LAYOUTS:
            sys.exit(f"make_published_layouts.py: unknown layout '{n}' (known: {', '.join(LAYOUTS)})")
        LAYOUTS[n](out)
        print(f"wrote {os.path.join(out, n)}")


if __name__ == "__main__":
    main()
