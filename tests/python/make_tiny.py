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

The families and their configs: tests/python/tiny_models.py.

Usage: make_tiny.py OUT [FAMILY ...]
"""
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file

from tiny_models import E, FAMILIES, tiny_config


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
    cfg = tiny_config(fam)
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
    fams = sys.argv[2:] or FAMILIES
    for fam in fams:
        make(fam, os.path.join(out, fam))
        print("wrote", fam)
