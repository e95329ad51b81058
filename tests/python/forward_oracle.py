#!/usr/bin/env python3
"""transformers forward of each tiny checkpoint: the oracle of moeq's native forward.

For each family FAM with TINY_DIR/FAM/model (written by make_tiny.py), loads the model with
transformers in float32 on the CPU, runs fixed ids and writes TINY_DIR/FAM/forward_oracle.safetensors:
  ids            [N, S] int64 (seed 1234)
  logits         [N, S, V] float32 (float32 forward)
  logits_bf16    [N, S, V] float32 (the same model loaded in bfloat16: grounds the bf16 tolerance)
  router.L.topk_ids  [N*S, k] int64, sorted per row, for each layer with routed experts
  amax.<module>  float32 scalar: amax of the input of every linear, keyed by the module name
                 moeq's Site.module uses. Routed experts (fused modules in transformers 5.x) are
                 hooked on the experts module: rows routed to expert e for gate_proj/up_proj,
                 act(gate) * up of those rows for down_proj; experts without rows get no key.
  tokens.L       [E] int64: rows routed to each expert of layer L

Variants (written here from a tiny family, then checked like one): configs and tensors the
tiny defaults leave unexercised. The tiny weights (0.05 * randn) make attention almost uniform,
so logits barely depend on RoPE or the attention scale; variants scale the attention weights
up until the attention pattern matters (scores of order 1).
  deepseek_v3_sharp  deepseek_v3 (interleaved default RoPE) with sharp attention
  deepseek_v3_yarn   deepseek_v3 with YaRN (mscale, mscale_all_dim), rope_interleave false, sharp
  gpt_oss_window     gpt_oss with sliding_window 8 (< the 24 tokens), sharp attention, larger sinks
  glm4_moe_qknorm    glm4_moe with use_qk_norm (random q_norm/k_norm weights), 2 expert groups
                     (topk_group 1), routed_scaling_factor 2.5, partial_rotary_factor 0.25

Usage: forward_oracle.py TINY_DIR [FAMILY ...]
"""
import glob
import os
import re
import sys

import torch
import transformers
from safetensors.torch import save_file

import tiny_models

N, S, SEED = 3, 24, 1234


def glm_qk_norms(tensors, cfg):
    gen = torch.Generator().manual_seed(7)
    for layer in range(cfg["num_hidden_layers"]):
        for n in ("q_norm", "k_norm"):
            w = 1 + 0.3 * torch.randn(cfg["head_dim"], generator=gen)
            tensors[f"model.layers.{layer}.self_attn.{n}.weight"] = w.to(torch.bfloat16)


# MLA's sharp attention: q_b and kv_b scale q and k_nope, kv_a the shared rope key (its latent is normed).
MLA_SHARP = {"q_b_proj.weight": 6.0, "kv_b_proj.weight": 6.0, "kv_a_proj_with_mqa.weight": 10.0}
YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 32,
        "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 0.707}
# variant -> (base family, config changes, tensor-name suffix -> scale, extra tensors)
VARIANTS = {
    "deepseek_v3_sharp": ("deepseek_v3", {}, MLA_SHARP, None),
    "deepseek_v3_yarn": ("deepseek_v3", {"rope_interleave": False, "rope_parameters": YARN}, MLA_SHARP, None),
    "gpt_oss_window": ("gpt_oss", {"sliding_window": 8},
                       {"q_proj.weight": 8.0, "k_proj.weight": 8.0, "self_attn.sinks": 20.0}, None),
    "glm4_moe_qknorm": ("glm4_moe", {"use_qk_norm": True, "n_group": 2, "topk_group": 1, "routed_scaling_factor": 2.5,
                                     "partial_rotary_factor": 0.25, "rope_parameters": {
                                         "rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25}},
                        {}, glm_qk_norms),
}


FAMILIES = tiny_models.FAMILIES + list(VARIANTS)  # every tiny family (tiny_models.py), then the variants


def make_variant(tiny, name):
    """TINY_DIR/name/{model,fused} from the base family's, with the variant's config and tensors."""
    import json
    from safetensors.torch import load_file
    base, changes, scales, extra = VARIANTS[name]
    for layout in ("model", "fused"):
        src, dst = os.path.join(tiny, base, layout), os.path.join(tiny, name, layout)
        if not os.path.isdir(src):
            continue
        os.makedirs(dst, exist_ok=True)
        cfg = json.load(open(os.path.join(src, "config.json")))
        cfg.update(changes)
        json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=1)
        for f in glob.glob(os.path.join(src, "*.safetensors")):
            tensors = load_file(f)
            for n, t in tensors.items():
                for suffix, factor in scales.items():
                    if n.endswith(suffix):
                        tensors[n] = (t.float() * factor).to(t.dtype)
            if extra:
                extra(tensors, cfg)
            save_file(tensors, os.path.join(dst, os.path.basename(f)), metadata={"format": "pt"})
# transformers module name -> the on-disk name moeq's Site.module uses, where they differ
# (Mixtral checkpoints keep `block_sparse_moe.experts.E.w1/w3/w2`; transformers 5 renames
# them on load).
DISK_NAMES = [
    (r"\.mlp\.experts\.(\d+)\.gate_proj$", r".block_sparse_moe.experts.\1.w1"),
    (r"\.mlp\.experts\.(\d+)\.up_proj$", r".block_sparse_moe.experts.\1.w3"),
    (r"\.mlp\.experts\.(\d+)\.down_proj$", r".block_sparse_moe.experts.\1.w2"),
    (r"\.mlp\.gate$", r".block_sparse_moe.gate"),
]


def disk_tensor_names(model_dir):
    from safetensors import safe_open
    names = set()
    for f in glob.glob(os.path.join(model_dir, "*.safetensors")):
        with safe_open(f, "pt") as h:
            names.update(h.keys())
    return names


def module_name(name, disk):
    """The module name as moeq's Site.module spells it for this checkpoint."""
    if name + ".weight" in disk:
        return name
    for pattern, repl in DISK_NAMES:
        renamed = re.sub(pattern, repl, name)
        if renamed != name and renamed + ".weight" in disk:
            return renamed
    return name  # fused 3D experts on disk: `<stack parent>.<E>.<proj>_proj`, as transformers names them


def layer_of(name):
    return int(name.split("layers.")[1].split(".")[0])


def is_linear_like(mod):
    """nn.Linear, or a router module holding a 2D weight (transformers 5.x TopKRouter)."""
    if isinstance(mod, torch.nn.Linear):
        return True
    w = getattr(mod, "weight", None)
    return (isinstance(w, torch.nn.Parameter) and w.dim() == 2 and not isinstance(mod, torch.nn.Embedding))


def expert_rows(mod, x, top_k_index):
    """{expert: (gate/up input rows, down input rows)} as the experts module computes them."""
    out = {}
    for e in range(mod.gate_up_proj.shape[0]):
        token_idx = (top_k_index == e).nonzero()[:, 0]
        if token_idx.numel() == 0:
            continue
        rows = x[token_idx]
        if type(mod).__name__ == "GptOssExperts":  # x @ W[e] + b[e], gate/up interleaved, clamped SwiGLU
            out[e] = (rows, mod._apply_gate(rows @ mod.gate_up_proj[e] + mod.gate_up_proj_bias[e]))
            continue
        gate, up = torch.nn.functional.linear(rows, mod.gate_up_proj[e]).chunk(2, dim=-1)
        out[e] = (rows, mod.act_fn(gate) * up)
    return out


def run(model_dir, ids, dtype, record):
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    model.eval()
    hooks, amax, routers = [], {}, {}

    def put(key, t):
        v = t.detach().abs().max().float()
        amax[key] = torch.maximum(amax[key], v) if key in amax else v

    for name, mod in model.named_modules():
        cls = type(mod).__name__
        if not record:
            break
        if cls.endswith("Experts") and hasattr(mod, "gate_up_proj"):
            def experts_hook(m, args, name=name):
                x, top_k_index = args[0], args[1]
                for e, (gu_in, down_in) in expert_rows(m, x, top_k_index).items():
                    put(f"{name}.{e}.gate_proj", gu_in)
                    put(f"{name}.{e}.up_proj", gu_in)
                    put(f"{name}.{e}.down_proj", down_in)
            hooks.append(mod.register_forward_pre_hook(experts_hook))
        elif cls.endswith("Router"):
            def router_hook(m, args, out, name=name):
                routers[layer_of(name)] = out[2].detach()
            hooks.append(mod.register_forward_hook(router_hook))
        if is_linear_like(mod):
            def linear_hook(m, args, name=name):
                put(name, args[0])
            hooks.append(mod.register_forward_pre_hook(linear_hook))
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    for h in hooks:
        h.remove()
    num_experts = getattr(model.config.get_text_config(), "num_experts", None) or \
        getattr(model.config.get_text_config(), "num_local_experts", None)
    return logits, amax, routers, num_experts


def make(fam_dir):
    model_dir = os.path.join(fam_dir, "model")
    torch.manual_seed(SEED)
    cfg = transformers.AutoConfig.from_pretrained(model_dir)
    vocab = cfg.get_text_config().vocab_size
    ids = torch.randint(0, vocab, (N, S), dtype=torch.long)
    logits, amax, routers, E = run(model_dir, ids, torch.float32, True)
    logits_bf16, _, _, _ = run(model_dir, ids, torch.bfloat16, False)
    out = {"ids": ids, "logits": logits.contiguous(), "logits_bf16": logits_bf16.contiguous()}
    for layer, idx in routers.items():
        idx = idx.reshape(N * S, -1)
        out[f"router.{layer}.topk_ids"] = idx.sort(dim=-1).values.contiguous()
        out[f"tokens.{layer}"] = torch.bincount(idx.reshape(-1), minlength=E).to(torch.long)
    disk = disk_tensor_names(model_dir)
    for k, v in amax.items():
        out[f"amax.{module_name(k, disk)}"] = v.reshape(()).contiguous()
    path = os.path.join(fam_dir, "forward_oracle.safetensors")
    save_file(out, path)
    diff = (logits_bf16 - logits).abs().max().item()
    print(f"wrote {path}: {len(amax)} amax keys, {len(routers)} routed layers, "
          f"max|logit| {logits.abs().max().item():.4f}, bf16 vs f32 max diff {diff:.4f}")


if __name__ == "__main__":
    tiny = sys.argv[1]
    for fam in sys.argv[2:] or FAMILIES:
        if fam in VARIANTS:
            make_variant(tiny, fam)
        if not os.path.isdir(os.path.join(tiny, fam, "model")):
            raise SystemExit(f"{tiny}/{fam}/model is missing: run make_tiny.py {tiny} {fam} first")
        make(os.path.join(tiny, fam))
