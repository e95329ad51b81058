#!/usr/bin/env python3
"""Writes tiny random checkpoints of each MoE family with transformers (the oracle).

For each family FAM, under OUT/FAM:
  model/          save_pretrained() output (the on-disk layout transformers 5.x writes)
  fused/          the same weights saved as the in-memory state_dict (fused 3D experts),
                  for families whose save_pretrained writes per-expert 2D tensors
  oracle.safetensors   per-expert [out, in] weights `layers.L.experts.E.{gate,up,down}`
                  taken from the in-memory model, checked against the experts module's
                  own forward before being written
  oracle.json     tensor count of model/, layers, experts, and the expert shapes

Usage: make_tiny.py OUT [FAMILY ...]
"""
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file

H, I, E, K, V = 64, 32, 8, 2, 256


def common(**kw):
    base = dict(hidden_size=H, num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=V,
                num_hidden_layers=2, max_position_embeddings=128, tie_word_embeddings=False)
    base.update(kw)
    return base


def configs():
    T = transformers
    return {
        "qwen3_moe": lambda: T.Qwen3MoeConfig(**common(intermediate_size=96, moe_intermediate_size=I, num_experts=E,
                                                       num_experts_per_tok=K, decoder_sparse_step=1)),
        "olmoe": lambda: T.OlmoeConfig(**common(intermediate_size=I, num_experts=E, num_experts_per_tok=K)),
        "mixtral": lambda: T.MixtralConfig(**common(intermediate_size=I, num_local_experts=E, num_experts_per_tok=K)),
        "gemma4": lambda: T.Gemma4TextConfig(**common(intermediate_size=96, moe_intermediate_size=I, num_experts=E,
                                                      top_k_experts=K, enable_moe_block=True, hidden_size_per_layer_input=0, num_global_key_value_heads=2,
                                                      global_head_dim=16, layer_types=["sliding_attention", "full_attention"])),
        "deepseek_v3": lambda: T.DeepseekV3Config(**common(intermediate_size=96, moe_intermediate_size=I, n_routed_experts=E,
                                                          num_experts_per_tok=K, n_shared_experts=1, first_k_dense_replace=1,
                                                          n_group=2, topk_group=1, q_lora_rank=32, kv_lora_rank=16,
                                                          qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
                                                          num_hidden_layers=3,
                                                          # MLA as real configs have it: head_dim (RoPE's dim) = qk_rope_head_dim,
                                                          # kv heads = heads (transformers' attention repeats k/v otherwise)
                                                          head_dim=8, num_key_value_heads=4)),
        "gpt_oss": lambda: T.GptOssConfig(**common(intermediate_size=I, num_local_experts=E, num_experts_per_tok=K,
                                                   layer_types=["sliding_attention", "full_attention"])),
        "glm4_moe": lambda: T.Glm4MoeConfig(**common(intermediate_size=96, moe_intermediate_size=I, n_routed_experts=E,
                                                    num_experts_per_tok=K, n_shared_experts=1, first_k_dense_replace=1,
                                                    n_group=1, topk_group=1, num_hidden_layers=3)),
        "qwen3_5_moe": lambda: T.Qwen3_5MoeTextConfig(**common(moe_intermediate_size=I, shared_expert_intermediate_size=I,
                                                              num_experts=E, num_experts_per_tok=K, num_hidden_layers=4,
                                                              linear_num_key_heads=2, linear_num_value_heads=4,
                                                              linear_key_head_dim=16, linear_value_head_dim=16,
                                                              layer_types=["linear_attention", "linear_attention",
                                                                           "linear_attention", "full_attention"])),
    }


def find_experts(model):
    """(layer index, experts module) for every layer with routed experts."""
    out = []
    for name, mod in model.named_modules():
        if type(mod).__name__.endswith("Experts") and hasattr(mod, "gate_up_proj"):
            layer = int(name.split("layers.")[1].split(".")[0])
            out.append((layer, mod))
    return out


def expert_weights(mod, e):
    """[out, in] gate, up, down of expert e as the module's forward uses them."""
    if type(mod).__name__ == "GptOssExperts":  # x @ W[e], gate/up interleaved on the last dim
        w = mod.gate_up_proj[e]
        return w[:, ::2].t(), w[:, 1::2].t(), mod.down_proj[e].t()
    inter = mod.gate_up_proj.shape[1] // 2  # F.linear(x, W[e]).chunk(2): gate rows first
    return mod.gate_up_proj[e, :inter], mod.gate_up_proj[e, inter:], mod.down_proj[e]


def check_against_forward(mod, e, gate, up, down):
    """The extracted matrices must reproduce the experts module's own forward for expert e."""
    torch.manual_seed(1000 + e)
    x = torch.randn(5, gate.shape[1], dtype=torch.float32)
    idx = torch.full((5, 1), e, dtype=torch.long)
    w = torch.ones(5, 1)
    with torch.no_grad():
        if type(mod).__name__ == "GptOssExperts":
            ref = mod(x, idx, w)
            gu = torch.empty(5, 2 * gate.shape[0])
            gu[:, ::2] = x @ gate.t() + mod.gate_up_proj_bias[e, ::2]
            gu[:, 1::2] = x @ up.t() + mod.gate_up_proj_bias[e, 1::2]
            mine = mod._apply_gate(gu) @ down.t() + mod.down_proj_bias[e]
        else:
            ref = mod(x, idx, w)
            mine = torch.nn.functional.linear(mod.act_fn(x @ gate.t()) * (x @ up.t()), down)
    if not torch.allclose(ref, mine, rtol=1e-5, atol=1e-6):
        raise SystemExit(f"oracle extraction disagrees with {type(mod).__name__}.forward for expert {e}")


def make(fam, out):
    torch.manual_seed(0)
    cfg = configs()[fam]()
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():  # the random init leaves some tensors at zero or one: make every value distinct
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    model = model.to(torch.bfloat16)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(os.path.join(out, "model"))
    oracle, shapes = {}, {}
    experts = find_experts(model)
    for layer, mod in experts:
        mod32 = mod.float()
        for e in range(mod.gate_up_proj.shape[0]):
            g, u, d = expert_weights(mod32, e)
            check_against_forward(mod32, e, g, u, d)
            for proj, w in (("gate", g), ("up", u), ("down", d)):
                oracle[f"layers.{layer}.experts.{e}.{proj}"] = w.to(torch.bfloat16).contiguous()
                shapes[proj] = list(w.shape)
        mod.to(torch.bfloat16)
    save_file(oracle, os.path.join(out, "oracle.safetensors"))
    from safetensors import safe_open
    import glob
    names = set()
    for f in glob.glob(os.path.join(out, "model", "*.safetensors")):
        with safe_open(f, "pt") as h:
            names.update(h.keys())
    fused_on_disk = any(n.endswith("experts.gate_up_proj") for n in names)
    if not fused_on_disk:  # also write the in-memory (fused 3D) layout to disk
        fdir = os.path.join(out, "fused")
        os.makedirs(fdir, exist_ok=True)
        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(sd, os.path.join(fdir, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(out, "model", "config.json")) as src, open(os.path.join(fdir, "config.json"), "w") as dst:
            dst.write(src.read())
    json.dump({"family": fam, "tensor_count": len(names), "fused_on_disk": fused_on_disk,
               "expert_layers": sorted(l for l, _ in experts), "num_experts": E, "shapes": shapes,
               "transformers": transformers.__version__, "torch": torch.__version__},
              open(os.path.join(out, "oracle.json"), "w"), indent=1)


if __name__ == "__main__":
    out = sys.argv[1]
    fams = sys.argv[2:] or list(configs())
    for fam in fams:
        make(fam, os.path.join(out, fam))
        print("wrote", fam)
