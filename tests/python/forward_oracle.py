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

Usage: forward_oracle.py TINY_DIR [FAMILY ...]
"""
import glob
import os
import re
import sys

import torch
import transformers
from safetensors.torch import save_file

N, S, SEED = 3, 24, 1234
FAMILIES = ["qwen3_moe", "olmoe", "mixtral", "gemma4"]
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
        if not os.path.isdir(os.path.join(tiny, fam, "model")):
            raise SystemExit(f"{tiny}/{fam}/model is missing: run make_tiny.py {tiny} {fam} first")
        make(os.path.join(tiny, fam))
