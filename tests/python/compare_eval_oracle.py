#!/usr/bin/env python3
"""Oracle of `moeq compare --eval`: the same KL / top-1 / perplexity / cosine from transformers.

For each family and recipe: `moeq quantize --dump-dequant` writes moeq's dequantized weights;
those replace the quantized tensors of the tiny checkpoint, transformers loads both the original
and the fake-quantized checkpoint (float32, CPU), and the metrics are computed in float64 from
their logits on fixed ids. `moeq compare --recipes R --eval-ids IDS --eval-dtype float32` must
report the same numbers (its own native forward, its own fake quantization).

Usage: compare_eval_oracle.py MOEQ_BINARY TINY_DIR WORK_DIR
"""
import json
import os
import shutil
import subprocess
import sys

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file

FAMILIES = ["qwen3_moe", "olmoe"]
RECIPES = {  # name -> (export, rule lines)
    "fp8": ("compressed-tensors",  # ModelOpt FP8 is W8A8 only (docs/consumers.md)
            '  - sites: "*"\n    format: fp8\n'),
    "nvfp4_experts": ("modelopt", '  - sites: "*experts*"\n    format: nvfp4\n'),
    "mxfp4": ("compressed-tensors", '  - sites: "*"\n    format: mxfp4\n'),
}
N, S, SEED = 3, 16, 99


def metrics(ref, q, ids):
    """The definitions of report.json: positions 0..S-2, float64."""
    r = ref[:, :-1].double()
    qq = q[:, :-1].double()
    lr, lq = torch.log_softmax(r, -1), torch.log_softmax(qq, -1)
    kl = (lr.exp() * (lr - lq)).sum(-1)
    tgt = ids[:, 1:].unsqueeze(-1)
    nll_r = -lr.gather(-1, tgt).mean()
    nll_q = -lq.gather(-1, tgt).mean()
    cos = torch.nn.functional.cosine_similarity(r, qq, dim=-1)
    return {"kl_mean": kl.mean().item(), "kl_max": kl.max().item(),
            "top1": (r.argmax(-1) == qq.argmax(-1)).double().mean().item(),
            "ppl_ref": nll_r.exp().item(), "ppl_quant": nll_q.exp().item(),
            "cosine_mean": cos.mean().item()}


def logits(model_dir, ids):
    m = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    m.eval()
    with torch.no_grad():
        return m(ids).logits.float()


def fake_quantized_checkpoint(model_dir, deq_dir, out_dir):
    """The tiny checkpoint with moeq's dequantized weights in place of the quantized tensors."""
    os.makedirs(out_dir, exist_ok=True)
    deq = load_file(os.path.join(deq_dir, "model.safetensors"))
    replaced = 0
    for f in os.listdir(model_dir):
        src = os.path.join(model_dir, f)
        if f.endswith(".safetensors"):
            tensors = load_file(src)
            for name in tensors:
                if name in deq:
                    assert deq[name].shape == tensors[name].shape, name
                    tensors[name] = deq[name].to(tensors[name].dtype)
                    replaced += 1
            with safe_open(src, "pt") as h:
                meta = h.metadata()
            save_file(tensors, os.path.join(out_dir, f), metadata=meta)
        elif os.path.isfile(src):
            shutil.copy(src, out_dir)
    # Every dumped tensor must land on a stored one (per-expert 2D layout on disk).
    assert replaced == len(deq), f"{model_dir}: {replaced} of {len(deq)} dequantized tensors matched a stored name"
    return replaced


def eval_ids(model, work, fam):
    """The model's config and its fixed eval ids [N, S] (seed SEED), also saved for moeq's --eval-ids."""
    cfg = json.load(open(os.path.join(model, "config.json")))
    ids = torch.randint(cfg["vocab_size"], (N, S), generator=torch.Generator().manual_seed(SEED))
    ids_file = os.path.join(work, f"{fam}_ids.safetensors")
    save_file({"ids": ids.contiguous()}, ids_file)
    return cfg, ids, ids_file


def main():
    moeq, tiny, work = sys.argv[1:4]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    failures = []
    for fam in FAMILIES:
        model = os.path.join(tiny, fam, "model")
        cfg, ids, ids_file = eval_ids(model, work, fam)
        ref = logits(model, ids)
        for name, (export, rules) in RECIPES.items():
            d = os.path.join(work, fam, name)
            os.makedirs(d)
            recipe = os.path.join(d, f"{name}.yaml")
            open(recipe, "w").write(f"recipe: {name}\nexport: {export}\nweight_only: true\nrules:\n{rules}")
            subprocess.run([moeq, "quantize", model, "--recipe", recipe, "-o", os.path.join(d, "export"),
                            "--dump-dequant", os.path.join(d, "deq")], check=True, stdout=subprocess.DEVNULL)
            n = fake_quantized_checkpoint(model, os.path.join(d, "deq"), os.path.join(d, "fq"))
            want = metrics(ref, logits(os.path.join(d, "fq"), ids), ids)
            subprocess.run([moeq, "compare", model, "--recipes", recipe, "--eval-ids", ids_file, "--eval-dtype",
                            "float32", "-o", os.path.join(d, "report")], check=True, stdout=subprocess.DEVNULL)
            rep = json.load(open(os.path.join(d, "report", "report.json")))
            got = rep["variants"][0]["output_error"]
            # KL is ~1e-8 on the tiny models (nearly uniform predictions): the float32 logits of
            # the two forwards (within 1e-4 of each other, [forward] tests) move it by a few %.
            ok = (abs(got["kl_mean"] - want["kl_mean"]) <= 0.05 * want["kl_mean"] + 1e-13
                  and abs(got["kl_max"] - want["kl_max"]) <= 0.25 * want["kl_max"] + 1e-13  # one token: noisier
                  and abs(got["top1"] - want["top1"]) <= 1.0 / (N * (S - 1)) + 1e-12
                  and abs(got["ppl_ref"] - want["ppl_ref"]) <= 1e-5 * want["ppl_ref"]
                  and abs(got["ppl_quant"] - want["ppl_quant"]) <= 1e-5 * want["ppl_quant"]
                  and abs(got["cosine_mean"] - want["cosine_mean"]) <= 1e-6
                  and want["kl_mean"] > 0 and got["kl_mean"] > 0)  # the fake quantization changed the output
            line = (f"{fam:10s} {name:14s} {n:3d} tensors  KL moeq {got['kl_mean']:.6e} oracle {want['kl_mean']:.6e}  "
                    f"max {got['kl_max']:.3e}/{want['kl_max']:.3e}  top1 {got['top1']:.4f}/{want['top1']:.4f}  ppl {got['ppl_quant']:.5f}/{want['ppl_quant']:.5f}  "
                    f"cos {got['cosine_mean']:.7f}/{want['cosine_mean']:.7f}  {'ok' if ok else 'MISMATCH'}")
            print(line)
            if not ok:
                failures.append(line)
    if failures:
        print(f"{len(failures)} mismatches")
        sys.exit(1)


if __name__ == "__main__":
    main()
