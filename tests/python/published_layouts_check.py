#!/usr/bin/env python3
"""moeq on every layout of make_published_layouts.py, as a user runs it: `inspect --strict`
clean (0 unclaimed, MTP and tower tensors counted), `quantize` with every shipped recipe
(recipes/*.yaml; --weight-only: no calibration data here) and with a recipe that names the
mtp role, `verify --source` OK with every expert quantized and decoded, every MTP / tower
tensor of the source in the export (byte for byte where copied) and in report.json.

Usage: published_layouts_check.py MOEQ LAYOUTS_DIR WORK_DIR [LAYOUT ...]
"""
import glob
import json
import os
import shutil
import subprocess
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
# Every shipped recipe but the GPTQ and AWQ ones, which need calibration with Hessians (--calib):
# calibrated_recipes_check.py runs those (shipped_recipes.py tells them apart by their text).
sys.path.insert(0, HERE)
from shipped_recipes import plain  # noqa: E402
RECIPES = plain()
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, flush=True)
    return cond


def moeq(*args):
    r = subprocess.run([MOEQ, *args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def export_tensors(d):
    names = {}
    for f in glob.glob(os.path.join(d, "*.safetensors")):
        with safe_open(f, framework="pt") as h:
            for k in h.keys():
                names[k] = f
    return names


MTP_RECIPE = """recipe: nvfp4_experts_and_mtp
export: modelopt
weight_only: true
rules:
  - roles: [experts, mtp]
    format: nvfp4
"""


def expected_refusal(name, recipe):
    """Plans quantize refuses on purpose (docs/consumers.md): FP8 weight-only has no ModelOpt
    layout, and vLLM loads no per-expert gpt-oss export."""
    base = os.path.basename(recipe)
    if base == "fp8.yaml":
        return "fp8 weight-only has no ModelOpt layout"
    if name.startswith("gpt_oss"):  # every recipe that quantizes experts into a vLLM layout
        return "gpt-oss experts written per expert do not load in vLLM"
    return ""


def run_recipe(name, src, facts, recipe, work, mtp_quantized):
    label = f"{name} / {os.path.basename(recipe)}"
    out = os.path.join(work, name + "-" + os.path.splitext(os.path.basename(recipe))[0])
    shutil.rmtree(out, ignore_errors=True)
    rc, so, se = moeq("quantize", src, "--recipe", recipe, "-o", out, "--weight-only")
    refusal = expected_refusal(name, recipe)
    if refusal and rc == 1 and refusal in se:
        print(f"ok   {label}: refused as designed ({refusal})", flush=True)
        return
    if os.path.basename(recipe) == "fp8.yaml":
        check(False, f"{label}: expected the refusal '{refusal}', got exit {rc}: {se.strip()[-300:]}")
        return
    if not check(rc == 0, f"{label}: quantize exit {rc}: {se.strip()[-400:]}"):
        return
    rep = json.load(open(os.path.join(out, "report.json")))
    want = facts["experts"] * facts["moe_layers"] * 3
    check(rep["experts"] == {"quantized": want, "total": want}, f"{label}: report experts {rep['experts']}, want {want}")
    mtp_sites = [s for s in rep["sites"] if s["role"] == "mtp"]
    mtp_other = [o for o in rep["other_tensors"] if o["role"] == "mtp"]
    reported = {s["tensor"] for s in mtp_sites} | {o["tensor"] for o in mtp_other}
    check(reported == set(facts["mtp_tensors"]),
          f"{label}: report's MTP tensors differ from the layout's: {sorted(reported ^ set(facts['mtp_tensors']))[:4]}")
    q = sum(s["format"] is not None for s in mtp_sites)
    check(q == (len(mtp_sites) if mtp_quantized else 0), f"{label}: {q} of {len(mtp_sites)} MTP sites quantized")
    check(rep["mtp"]["sites"] == len(mtp_sites) and rep["mtp"]["quantized"] == q, f"{label}: report mtp {rep['mtp']}")
    towers = {o["tensor"] for o in rep["other_tensors"] if o["role"] == "tower"}
    check(towers == set(facts["tower_tensors"]), f"{label}: report's tower tensors differ from the layout's")
    check(not rep["unclaimed"], f"{label}: report lists unclaimed tensors {rep['unclaimed'][:3]}")
    have = export_tensors(out)
    for t in facts["tower_tensors"] + ([] if mtp_quantized else facts["mtp_tensors"]):
        check(t in have, f"{label}: {t} missing from the export")
    rc, so, se = moeq("verify", out, "--source", src, "--json")
    if not check(rc == 0, f"{label}: verify exit {rc}: {(so + se).strip()[-600:]}"):
        return
    v = json.loads(so)
    check(v["experts_expected"] == want and v["experts_quantized"] == want,
          f"{label}: verify experts {v['experts_quantized']} / {v['experts_expected']}, want {want}")
    n_mtp_copied = len(facts["mtp_tensors"]) - (len(mtp_sites) if mtp_quantized else 0)
    check(v["mtp"] == {"copied": n_mtp_copied, "quantized": q}, f"{label}: verify mtp {v['mtp']}, want {n_mtp_copied} copied")
    check(v["towers"] == {"copied": len(facts["tower_tensors"]), "quantized": 0}, f"{label}: verify towers {v['towers']}")
    print(f"ok   {label}: {want} experts quantized, MTP {q} quantized / {n_mtp_copied} copied, "
          f"{len(facts['tower_tensors'])} tower tensors copied", flush=True)
    shutil.rmtree(out, ignore_errors=True)


def run_forward(name, src, work):
    """The native forward runs the trunk and skips the MTP layers (compare --eval-ids runs it
    on the source and on a quantized variant)."""
    ids = os.path.join(work, "ids.safetensors")
    save_file({"ids": torch.arange(2 * 16, dtype=torch.int64).reshape(2, 16) % 200}, ids)
    out = os.path.join(work, name + "-compare")
    shutil.rmtree(out, ignore_errors=True)
    rc, so, se = moeq("compare", src, "--formats", "nvfp4", "--eval-ids", ids, "-o", out, "--eval-dtype", "float32")
    if not check(rc == 0, f"{name}: compare --eval-ids (native forward) exit {rc}: {se.strip()[-400:]}"):
        return
    rep = json.load(open(os.path.join(out, "report.json")))
    kl = [v["output_error"]["kl_mean"] for v in rep["variants"] if v.get("output_error")]
    check(kl and all(k == k and k >= 0 for k in kl), f"{name}: compare's output error {kl}")
    print(f"ok   {name}: native forward over the trunk (MTP layers skipped), nvfp4 KL {kl}", flush=True)
    shutil.rmtree(out, ignore_errors=True)


def run_layout(name, work):
    src = os.path.join(LAYOUTS, name)
    facts = json.load(open(os.path.join(src, "layout.json")))
    rc, so, se = moeq("inspect", src, "--strict", "--json", "--summary")
    if not check(rc == 0, f"{name}: inspect --strict exit {rc}: {se.strip()[-400:]}"):
        return
    j = json.loads(so)
    check(j["unclaimed"] == [] and j["tensor_count"] == facts["tensors"] == j["tensors_claimed"],
          f"{name}: inspect: {j['tensors_claimed']} of {j['tensor_count']} claimed ({facts['tensors']} written)")
    check(j["mtp_tensors"] == len(facts["mtp_tensors"]), f"{name}: inspect mtp_tensors {j['mtp_tensors']}")
    check(j["mtp_layers"] == facts["mtp_layers"], f"{name}: inspect mtp_layers {j['mtp_layers']}")
    check(j["tower_tensors"] == len(facts["tower_tensors"]), f"{name}: inspect tower_tensors {j['tower_tensors']}")
    check(j["missing_experts"] == [], f"{name}: missing experts {j['missing_experts']}")
    rc, text, _ = moeq("inspect", src, "--summary")
    check(rc == 0 and "mtp / towers" in text, f"{name}: inspect's text output lacks the mtp / towers line")
    print(f"ok   {name}: inspect --strict: {j['tensor_count']} tensors claimed, {j['mtp_tensors']} MTP "
          f"(layers {j['mtp_layers']}), {j['tower_tensors']} tower", flush=True)
    if facts.get("forward"):
        run_forward(name, src, work)
    for r in RECIPES:
        run_recipe(name, src, facts, r, work, mtp_quantized=False)
    if facts["mtp_tensors"]:
        path = os.path.join(work, "nvfp4_experts_and_mtp.yaml")
        with open(path, "w") as f:
            f.write(MTP_RECIPE)
        run_recipe(name, src, facts, path, work, mtp_quantized=True)


def main():
    global MOEQ, LAYOUTS
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    MOEQ, LAYOUTS, work = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(work, exist_ok=True)
    names = sys.argv[4:] or sorted(d for d in os.listdir(LAYOUTS) if os.path.exists(os.path.join(LAYOUTS, d, "layout.json")))
    check(names, f"no layouts under {LAYOUTS}")
    check(len(RECIPES) >= 10, f"expected the shipped recipes under recipes/, found {len(RECIPES)}")
    for n in names:
        run_layout(n, work)
    print(f"{len(names)} layouts, {len(RECIPES)} shipped recipes: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
