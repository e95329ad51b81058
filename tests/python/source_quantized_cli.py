#!/usr/bin/env python3
"""The CLI on checkpoints published quantized (FP8 block, MXFP4): every layout of
make_published_quantized.py must pass `moeq inspect --strict`, `moeq quantize` with the shipped
recipes (every expert quantized, every decoded-but-unquantized site reported as such) and
`moeq verify --source`; `moeq compare --eval-ids` runs the native forward on the decoded weights.

Usage: source_quantized_cli.py MOEQ OUT_DIR
"""
import json
import os
import shutil
import subprocess
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_published_quantized  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# fp8_experts_weight_only: FP8 weight-only is compressed-tensors (ModelOpt FP8 is W8A8 only).
RECIPES = ["nvfp4_experts_only", "fp8_experts_weight_only", "mxfp4_experts"]


def recipe_for(layout, recipe, out):
    """The shipped recipe; for gpt-oss with `consumer_checks: false`, since vLLM loads no per-expert
    gpt-oss export and quantize refuses one by default (export/fused_consumer_rules.h)."""
    path = os.path.join(ROOT, "recipes", recipe + ".yaml")
    if not layout.startswith("gpt_oss"):
        return path
    own = os.path.join(out, f"{layout}-{recipe}.yaml")
    with open(path) as f, open(own, "w") as g:
        g.write("consumer_checks: false\n" + f.read())
    return own
SOURCE = {"deepseek_v3_fp8": "fp8-block", "qwen3_moe_fp8": "fp8-block", "gpt_oss_mxfp4": "mxfp4"}


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"FAIL ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p.stdout + p.stderr


def load_dir(d, prefix=""):
    from safetensors import safe_open
    t = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(d, f), "pt") as h:
                t.update({k: h.get_tensor(k) for k in h.keys() if k.startswith(prefix)})
    return t


def decode_problems(src, out):
    """A recipe that quantizes nothing writes every weight decoded: bit for bit transformers' decode."""
    from oracle_source_dequant import fp8_oracle
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    s, o = load_dir(src), load_dir(out)
    bad, n = [], 0
    bits = lambda t: t.contiguous().view(torch.int16)
    for name, t in s.items():
        if name.endswith(".weight_scale_inv"):
            w = name[: -len("_scale_inv")]
            want, got = fp8_oracle(s[w], t, []), o.get(w)
            pairs = [(w, got, want)]
        elif name.endswith("_blocks"):
            base = name[: -len("_blocks")]
            deq = convert_moe_packed_tensors(t, s[base + "_scales"])  # [E, in, out]
            pairs = []
            for e in range(deq.shape[0]):
                stem = f"{base[: base.rfind('.')]}.{e}."
                if base.endswith("gate_up_proj"):
                    pairs += [(stem + "gate_proj.weight", None, deq[e, :, 0::2].t()),
                              (stem + "up_proj.weight", None, deq[e, :, 1::2].t())]
                else:
                    pairs.append((stem + "down_proj.weight", None, deq[e].t()))
            pairs = [(k, o.get(k), w) for k, _, w in pairs]
        else:
            continue
        for k, got, want in pairs:
            n += 1
            if got is None:
                bad.append(f"{out}: no decoded tensor {k}")
            elif got.dtype != torch.bfloat16 or got.shape != want.shape or not torch.equal(bits(got), bits(want)):
                bad.append(f"{out}: {k} {got.dtype} {tuple(got.shape)} differs from transformers' decode "
                           f"{tuple(want.shape)} ({(got.float() != want.float()).sum().item()} values)")
    for k in o:
        if k.endswith("_scale_inv") or k.endswith("_blocks") or k.endswith("_scales"):
            bad.append(f"{out}: source codes/scales copied through: {k}")
    print(f"{os.path.basename(src)} decode_only: {n} weights written decoded, {n - len(bad)} equal to transformers bit for bit")
    return bad


def exact_conversion_problems(src, dump):
    """Layer 0's experts convert exactly: the NVFP4 export decodes to transformers' MXFP4 decode."""
    from safetensors import safe_open
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    t = {}
    for f in os.listdir(src):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(src, f), "pt") as h:
                t.update({k: h.get_tensor(k) for k in h.keys() if k.startswith("model.layers.0.mlp.experts.")})
    dq = {}
    with safe_open(os.path.join(dump, "model.safetensors"), "pt") as h:
        dq = {k: h.get_tensor(k) for k in h.keys()}
    p = "model.layers.0.mlp.experts."
    gate_up = convert_moe_packed_tensors(t[p + "gate_up_proj_blocks"], t[p + "gate_up_proj_scales"]).float()
    down = convert_moe_packed_tensors(t[p + "down_proj_blocks"], t[p + "down_proj_scales"]).float()
    bad = []
    for e in range(gate_up.shape[0]):
        for proj, want in (("gate", gate_up[e, :, 0::2].t()), ("up", gate_up[e, :, 1::2].t()), ("down", down[e].t())):
            got = dq[f"{p}{e}.{proj}_proj.weight"].float()
            if not torch.equal(got, want):
                bad.append(f"{p}{e}.{proj}_proj: NVFP4 decode differs from the MXFP4 source in "
                           f"{(got != want).sum().item()} of {want.numel()} values (exact conversion expected)")
    return bad


def main():
    moeq, out = sys.argv[1], sys.argv[2]
    shutil.rmtree(out, ignore_errors=True)
    src = os.path.join(out, "src")
    make_published_quantized.main_args([src])
    ids = os.path.join(out, "ids.safetensors")
    save_file({"ids": torch.randint(0, make_published_quantized.V, (2, 16), generator=torch.Generator().manual_seed(0))}, ids)
    failures = []
    for layout, fmt in SOURCE.items():
        d = os.path.join(src, layout)
        text = run([moeq, "inspect", d, "--strict", "--summary"])
        if f"experts" not in text or fmt not in text:
            failures.append(f"{layout}: inspect does not show source format {fmt} for the experts:\n{text}")
        j = json.loads(run([moeq, "inspect", d, "--json", "--summary"]).split("\nwarning")[0])
        if fmt not in j["roles"]["experts"]["source"]:
            failures.append(f"{layout}: inspect --json roles.experts.source = {j['roles']['experts']['source']}")
        # Bytes per role as stored (MXFP4: half a byte per weight + its scales), summing to the files' tensor bytes.
        role_bytes = sum(r["bytes"] for r in j["roles"].values())
        if role_bytes != j["total_bytes"]:
            failures.append(f"{layout}: inspect's roles hold {role_bytes} bytes, the checkpoint's tensors {j['total_bytes']}")
        for recipe in RECIPES:
            o = os.path.join(out, f"{layout}-{recipe}")
            dump = o + "-dequant"
            run([moeq, "quantize", d, "--recipe", recipe_for(layout, recipe, out), "-o", o,
                 "--weight-only", "--dump-dequant", dump])
            if layout == "gpt_oss_mxfp4" and recipe == "nvfp4_experts_only":
                failures += exact_conversion_problems(d, dump)
            rep = json.load(open(os.path.join(o, "report.json")))
            q, t = rep["experts"]["quantized"], rep["experts"]["total"]
            if q != t or t == 0:
                failures.append(f"{layout} {recipe}: experts quantized {q} / {t}")
            actions = rep["source_actions"]
            n_src = sum(1 for s in rep["sites"] if s.get("source") == fmt)
            if sum(actions.values()) != n_src or n_src == 0:
                failures.append(f"{layout} {recipe}: source_actions {actions} do not cover the {n_src} {fmt} sites")
            for s in rep["sites"]:
                if s.get("source") == fmt and not s["format"] and s["source_action"] != f"source {fmt} -> bf16 (decoded)":
                    failures.append(f"{layout} {recipe}: {s['site']}: {s['source_action']}")
            conv = rep.get("mxfp4_to_nvfp4")
            if layout == "gpt_oss_mxfp4" and recipe == "nvfp4_experts_only":
                # every 32-block of the experts converts exactly but the one the generator put 2^-30 below
                total = sum(2 * 4 * r * g for r, g in ((128, 3), (96, 2)))
                if conv != {"exact_blocks": total - 1, "requantized_blocks": 1}:
                    failures.append(f"{layout} {recipe}: mxfp4_to_nvfp4 {conv}, expected {total - 1} exact, 1 re-quantized")
            elif conv:
                failures.append(f"{layout} {recipe}: unexpected mxfp4_to_nvfp4 {conv}")
            vtext = run([moeq, "verify", o, "--source", d])
            print(f"{layout} {recipe}: experts {q}/{t}, {actions}; verify: {vtext.strip().splitlines()[-1]}")
        o = os.path.join(out, f"{layout}-decode_only")
        run([moeq, "quantize", d, "--recipe", os.path.join(ROOT, "tests", "data", "decode_only.yaml"), "-o", o])
        failures += decode_problems(d, o)
        c = os.path.join(out, f"{layout}-compare")
        ctext = run([moeq, "compare", d, "--formats", "nvfp4,fp8", "-o", c, "--eval-ids", ids])
        cj = json.load(open(os.path.join(c, "report.json")))
        print(f"{layout} compare --eval-ids: {len(cj.get('variants', []))} variants, forward ran on decoded weights")
    if failures:
        sys.exit("FAIL:\n" + "\n".join(failures))
    print("source_quantized_cli: OK")


if __name__ == "__main__":
    main()
