#!/usr/bin/env python3
"""The shipped recipes that need calibration with Hessians (shipped_recipes.calibrated(): calibrator gptq or awq;
`moeq calibrate --gptq-hessians`) on every tiny family, as a user runs them: calibrate (with
--channel-amax, which AWQ's W4A4 input scales need), `quantize --calib`, `verify --source` OK
with every expert quantized and decoded. For AWQ also a copy of each recipe with min_tokens 1,
so that the tiny calibration's experts get scales: the export holds moeq_awq/scales.safetensors
with scales other than 1, verify compares against the folded source, and `compare --eval-ids`
of the recipe runs (finite KL). Families whose experts do not fold (gpt-oss's clamped SwiGLU)
or that vLLM does not load per expert must be refused with their reason. An AWQ recipe with an
attention rule must give every family q/k/v input scales, and o_proj scales where v -> o folds
(else an `awq fallback:` line naming why: Gemma4's v_norm, DeepSeek-V3's MLA); naming `o` in
`inputs` where it does not fold is an error.

Usage: calibrated_recipes_check.py MOEQ TINY_DIR WORK_DIR [FAMILY ...]
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from consumer_util import check, failures  # noqa: E402
from tiny_models import FAMILIES  # noqa: E402

from shipped_recipes import calibrated  # noqa: E402

RECIPES = calibrated()  # every shipped recipe with calibrator gptq or awq (shipped_recipes.py)
N, S = 4, 32


def moeq(*args):
    r = subprocess.run([MOEQ, *args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def refusal(fam, recipe_text):
    why = []
    if "group_size: 128" in recipe_text:  # the tiny families' widths are below 128
        why.append("do not fit int4")
    if "recipe: awq_attention_only" in recipe_text:  # plain experts: gpt-oss too (its sinks and v bias fold)
        return why
    if fam.startswith("gpt_oss"):
        if "consumer_checks: false" in recipe_text:  # past vLLM's refusal: AWQ's own
            return why + ["swiglu_limit"]
        why += ["gpt-oss experts written per expert do not load in vLLM", "do not load in vLLM"]
    return why


def run(fam, model, calib, ids, recipe, work):
    text = open(recipe).read()
    label = f"{fam} / {os.path.basename(recipe)}"
    out = os.path.join(work, fam + "-" + os.path.splitext(os.path.basename(recipe))[0])
    shutil.rmtree(out, ignore_errors=True)
    rc, so, se = moeq("quantize", model, "--recipe", recipe, "--calib", calib, "-o", out)
    why = refusal(fam, text)
    if fam.startswith("gpt_oss") and "consumer_checks: false" in text and "recipe: awq_attention_only" not in text:
        if check(rc != 0 and "swiglu_limit" in se, f"{label}: expected AWQ's swiglu_limit refusal, got exit {rc}: {se.strip()[-300:]}"):
            print(f"ok   {label}: refused as designed (no exact fold)", flush=True)
        return
    if why and rc != 0:
        check(any(w in se for w in why), f"{label}: refused, but not for the expected reason: {se.strip()[-300:]}")
        print(f"ok   {label}: refused as designed", flush=True)
        return
    if not check(rc == 0, f"{label}: quantize exit {rc}: {se.strip()[-500:]}"):
        return
    check(not why, f"{label}: expected a refusal ({why})")
    rep = json.load(open(os.path.join(out, "report.json")))
    check(rep["experts"]["quantized"] == rep["experts"]["total"] > 0, f"{label}: report experts {rep['experts']}")
    rc, vo, ve = moeq("verify", out, "--source", model, "--json")
    if not check(rc == 0, f"{label}: verify exit {rc}: {(vo + ve).strip()[-600:]}"):
        return
    v = json.loads(vo)
    check(v["experts_quantized"] == v["experts_expected"] == rep["experts"]["total"],
          f"{label}: verify experts {v['experts_quantized']} / {v['experts_expected']}")
    scales = os.path.join(out, "moeq_awq", "scales.safetensors")
    awq = "method: awq" in text or re.search(r"\bawq: (true|\{)", text) is not None  # awq, or gptq after AWQ's scales
    check(os.path.exists(scales) == awq, f"{label}: moeq_awq/scales.safetensors {'missing' if awq else 'present'}")
    extra = ""
    if awq:
        with safe_open(scales, framework="pt") as f:
            s = torch.cat([f.get_tensor(k).flatten() for k in f.keys()])
        moved = int((s != 1).sum())
        check(torch.isfinite(s).all() and (s > 0).all(), f"{label}: AWQ scales not finite and positive")
        if "min_tokens: 1}" in text:
            check(moved > 0, f"{label}: every AWQ scale is 1 with min_tokens 1")
        extra = f", {moved} of {s.numel()} AWQ scales != 1"
        if "roles: [attention]" in text:
            with safe_open(scales, framework="pt") as f:
                keys = list(f.keys())
            warn = json.load(open(os.path.join(out, "report.json")))["warnings"]
            qkv = sum(".attn.qkv." in k for k in keys)
            o = sum(".attn.o." in k for k in keys)
            check(qkv > 0 or any("attn input" in w and "no alpha" in w for w in warn), f"{label}: no attention input scales: {keys}")
            why = {"gemma4": "v_norm", "deepseek_v3": "MLA"}.get(fam)
            if why:
                check(o == 0 and any(why in w and "attn.o" in w for w in warn), f"{label}: expected o's fallback ({why}): {warn}")
            else:
                check(o > 0 or any("attn.o: no alpha" in w for w in warn), f"{label}: no o_proj scales and no fallback: {keys}")
            extra += f", attention: {qkv} qkv / {o} o scale tensors"
        cmp = os.path.join(work, fam + "-compare")
        shutil.rmtree(cmp, ignore_errors=True)
        rc, co, ce = moeq("compare", model, "--recipes", recipe, "--calib", calib, "--eval-ids", ids, "-o", cmp,
                          "--eval-dtype", "float32")
        if check(rc == 0, f"{label}: compare exit {rc}: {ce.strip()[-400:]}"):
            crep = json.load(open(os.path.join(cmp, "report.json")))
            kl = [x["output_error"]["kl_mean"] for x in crep["variants"] if x.get("output_error")]
            check(kl and all(k == k and 0 <= k < 5 for k in kl), f"{label}: compare KL {kl}")
            extra += f", compare KL {['%.4f' % k for k in kl]}"
        shutil.rmtree(cmp, ignore_errors=True)
    print(f"ok   {label}: {v['experts_quantized']} experts, verify --source OK{extra}", flush=True)
    shutil.rmtree(out, ignore_errors=True)


def main():
    global MOEQ
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    MOEQ, tiny, work = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(work, exist_ok=True)
    fams = sys.argv[4:] or FAMILIES
    check(any(r.endswith("_awq.yaml") for r in RECIPES) and any(r.endswith("_gptq.yaml") for r in RECIPES),
          f"expected gptq and awq recipes under recipes/, found {RECIPES}")
    recipes = list(RECIPES)
    for r in RECIPES:  # AWQ with min_tokens 1: scales on the tiny calibration's experts
        if r.endswith("_awq.yaml"):
            t = re.sub(r"min_tokens: \d+\}", "min_tokens: 1}", open(r).read())
            p = os.path.join(work, os.path.basename(r).replace(".yaml", "_min1.yaml"))
            open(p, "w").write(t)
            recipes.append(p)
            # Without the vLLM checks, so that gpt-oss reaches AWQ's own refusal (no exact fold).
            p2 = p.replace("_min1.yaml", "_noconsumer.yaml")
            open(p2, "w").write(t.replace("\nrules:", "\nconsumer_checks: false\nrules:", 1))
            recipes.append(p2)
    # AWQ on attention alone, experts plain: reaches gpt-oss's attention (sinks, biased v_proj),
    # which the shipped recipe's expert rule refuses first.
    p = os.path.join(work, "awq_attention_only.yaml")
    open(p, "w").write("recipe: awq_attention_only\nexport: compressed-tensors\nweight_only: true\nconsumer_checks: false\nrules:\n"
                       "  - sites: \"*\"\n    format: int4\n    params: {group_size: 32, symmetric: true}\n"
                       "  - roles: [attention]\n    format: int4\n    params: {group_size: 32, symmetric: true}\n"
                       "    calibrator: {method: awq, min_tokens: 1}\n")
    recipes.append(p)
    for fam in fams:
        model = os.path.join(tiny, fam, "model")
        cfg = json.load(open(os.path.join(model, "config.json")))
        vocab = cfg.get("vocab_size") or cfg.get("text_config", {}).get("vocab_size")
        g = torch.Generator().manual_seed(16)
        data = os.path.join(work, f"{fam}_calib.jsonl")
        with open(data, "w") as f:
            for row in torch.randint(vocab, (N, S), generator=g).tolist():
                f.write(json.dumps({"ids": row}) + "\n")
        ids = os.path.join(work, f"{fam}_eval.safetensors")
        save_file({"ids": torch.randint(vocab, (2, S), generator=g)}, ids)
        calib = os.path.join(work, f"{fam}_calib.h5")
        rc, so, se = moeq("calibrate", model, "--data", data, "-o", calib, "--samples", str(N), "--seq-len", str(S),
                          "--gptq-hessians", "--channel-amax", "--quiet")
        if not check(rc == 0, f"{fam}: calibrate exit {rc}: {se.strip()[-400:]}"):
            continue
        for r in recipes:
            run(fam, model, calib, ids, r, work)
        if fam == "gemma4":  # o named where v_norm leaves no exact fold: one line, non-zero exit
            p = os.path.join(work, "awq_attn_o.yaml")
            open(p, "w").write("recipe: awq_attn_o\nexport: compressed-tensors\nweight_only: true\nrules:\n"
                               "  - sites: \"*\"\n    format: int4\n    params: {group_size: 32, symmetric: true}\n"
                               "  - roles: [attention]\n    format: int4\n    params: {group_size: 32, symmetric: true}\n"
                               "    calibrator: {method: awq, inputs: [qkv, o]}\n")
            out = os.path.join(work, "gemma4-awq-o")
            rc, so, se = moeq("quantize", model, "--recipe", p, "--calib", calib, "-o", out)
            if check(rc != 0 and "v_norm" in se and "leave o out" in se and len(se.strip().splitlines()) == 1,
                     f"gemma4: awq inputs [qkv, o]: expected the one-line v_norm refusal, got exit {rc}: {se.strip()[-400:]}"):
                print("ok   gemma4 / awq inputs [qkv, o]: refused as designed (v_norm)", flush=True)
    print(f"{len(fams)} families, {len(recipes)} calibrated recipes: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
