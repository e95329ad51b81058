#!/usr/bin/env python3
"""`moeq compare --exports` on moeq's own exports equals `moeq compare --recipes` for the same recipe.

For each tiny family (re-drawn so that quantization shows in its logits: compare_exports_modelopt.py
sharpened_copy) and recipe (every export layout: ModelOpt NVFP4 W4A4 and FP8 W8A8, bitsandbytes
NF4, compressed-tensors INT4 asymmetric W4A16 and NVFP4 W4A4): `moeq calibrate` writes calib.h5,
`moeq quantize --calib` writes the export, and ONE `moeq compare MODEL --recipes R --calib calib.h5
--exports X=EXPORT --eval-ids IDS` runs both on the same eval windows. The export's rows (its W4A4 /
W8A8 row, which fake-quantizes activations with the export's own input scales, and its weights-only
twin) must give exactly the recipe's rows: KL mean and max, top-1, perplexity, cosine, and the mean
SQNR of the weight error. Same forward, same weights (the export holds the bytes compare computes),
same input scales (the export stores compare --calib's float32 scale).

One exception, by construction: compressed-tensors NVFP4 stores reciprocals, weight_global_scale =
1 / weight_scale_2 and input_global_scale = 448 * 6 / amax, and reading them back takes 1 / x again,
which is not always the float32 the recipe path used (1 ulp). Those rows must agree within 1e-5
relative KL, 1e-6 relative perplexity and one top-1 token instead (seen: 1e-7 and 2e-8 relative KL),
and the test prints how far they are.

The INT4 export is also rewritten in activation order (groups renumbered by a random permutation,
weight_g_idx naming each column's group, scales and zero points moved with them): the same weights,
so its rows must equal the recipe's exactly too.

Then the errors: an export with one extra tensor, and one with a missing scale, must fail with one
line naming the file and the tensor (exit 1), never fall back to the source's weights.

Usage: compare_exports_self.py MOEQ_BINARY TINY_DIR WORK_DIR
"""
import json
import os
import shutil
import subprocess
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_eval_oracle import S, eval_ids  # noqa: E402
from compare_exports_modelopt import sharpened_copy  # noqa: E402

FAMILIES = ["qwen3_moe", "olmoe"]
RECIPE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "recipes")
# name -> (recipe text or shipped recipe, exact?)
RECIPES = {
    "nvfp4_experts_only": (None, True),
    "fp8": (None, True),
    "nf4_experts": (None, True),
    "int4_asym_ct": ("recipe: int4_asym_ct\nexport: compressed-tensors\nweight_only: true\nrules:\n"
                     "  - sites: \"*\"\n    format: int4\n    params: {group_size: 32, symmetric: false}\n", True),
    "nvfp4_ct": ("recipe: nvfp4_ct\nexport: compressed-tensors\nrules:\n  - roles: [experts]\n    format: nvfp4\n"
                 "    input_quant: true\n  - roles: [attention, dense_mlp, shared_experts, other]\n    enable: false\n", False),
}
KEYS = ["kl_mean", "kl_max", "top1", "ppl_ref", "ppl_quant", "cosine_mean"]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)


def rows_equal(a, b, exact):
    oa, ob = a["output_error"], b["output_error"]
    if exact:
        return (all(oa[k] == ob[k] for k in KEYS) and a["summary"]["mean_sqnr_db"] == b["summary"]["mean_sqnr_db"]
                and a["quantized_sites"] == b["quantized_sites"] and a["quantized_weights"] == b["quantized_weights"])
    return (abs(oa["kl_mean"] - ob["kl_mean"]) <= 1e-5 * ob["kl_mean"] and abs(oa["top1"] - ob["top1"]) <= 1.0 / (3 * (S - 1)) + 1e-12
            and abs(oa["ppl_quant"] - ob["ppl_quant"]) <= 1e-6 * ob["ppl_quant"] and oa["ppl_ref"] == ob["ppl_ref"])


def act_order_copy(export, out):
    """The export with every packed INT4 linear's groups renumbered by a random permutation and
    weight_g_idx giving each column its (renumbered) group: the same weights in activation order."""
    shutil.copytree(export, out)
    g = torch.Generator().manual_seed(5)
    for f in sorted(os.listdir(out)):
        if not f.endswith(".safetensors"):
            continue
        t = load_file(os.path.join(out, f))
        for k in [k for k in t if k.endswith(".weight_packed")]:
            m = k[: -len(".weight_packed")]
            groups = t[m + ".weight_scale"].shape[1]
            cols = int(t[m + ".weight_shape"][1])
            perm = torch.randperm(groups, generator=g)
            t[m + ".weight_g_idx"] = perm[torch.arange(cols) // (cols // groups)].to(torch.int32)
            for p in (".weight_scale", ".weight_zero_point"):
                if m + p in t:
                    moved = torch.empty_like(t[m + p])
                    moved[:, perm] = t[m + p]
                    t[m + p] = moved
        save_file(t, os.path.join(out, f), metadata={"format": "pt"})
    idx = os.path.join(out, "model.safetensors.index.json")
    if os.path.exists(idx):
        j = json.load(open(idx))
        for f in os.listdir(out):
            if f.endswith(".safetensors"):
                for k in load_file(os.path.join(out, f)):
                    j["weight_map"][k] = f
        json.dump(j, open(idx, "w"))
    return out


def expect_failure(moeq, model, export, ids_file, out, must_name):
    p = subprocess.run([moeq, "compare", model, "--exports", f"bad={export}", "--eval-ids", ids_file, "-o", out],
                       capture_output=True, text=True)
    err = p.stderr.strip().splitlines()
    ok = p.returncode == 1 and len(err) == 1 and all(s in err[0] for s in must_name)
    print(f"  refuses {os.path.basename(export)}: rc {p.returncode}: {err[-1] if err else '(no message)'}  {'ok' if ok else 'FAILED'}")
    return ok


def main():
    moeq, tiny, work = sys.argv[1:4]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    failures = []
    for fam in FAMILIES:
        model = os.path.join(work, fam, "model")
        sharpened_copy(os.path.join(tiny, fam, "model"), model)
        cfg, ids, ids_file = eval_ids(model, work, fam)
        calib_ids = torch.randint(cfg["vocab_size"], (4, S), generator=torch.Generator().manual_seed(7))
        data = os.path.join(work, f"{fam}_calib.jsonl")
        with open(data, "w") as f:
            for row in calib_ids.tolist():
                f.write(json.dumps({"ids": row}) + "\n")
        calib = os.path.join(work, f"{fam}_calib.h5")
        run([moeq, "calibrate", model, "--data", data, "-o", calib, "--samples", "4", "--seq-len", str(S), "--dtype", "f32",
             "--quiet"])
        for name, (text, exact) in RECIPES.items():
            d = os.path.join(work, fam, name)
            os.makedirs(d)
            recipe = os.path.join(RECIPE_DIR, f"{name}.yaml")
            if text:
                recipe = os.path.join(d, f"{name}.yaml")
                open(recipe, "w").write(text)
            export = os.path.join(d, "export")
            run([moeq, "quantize", model, "--recipe", recipe, "--calib", calib, "-o", export])
            exports = [f"x={export}"]
            if name == "int4_asym_ct":  # the same weights written in activation order (weight_g_idx)
                exports.append(f"gidx={act_order_copy(export, os.path.join(d, 'export_gidx'))}")
            run([moeq, "compare", model, "--recipes", recipe, "--calib", calib, "--exports", *exports,
                 "--eval-ids", ids_file, "--eval-dtype", "float32", "-o", os.path.join(d, "report")])
            v = json.load(open(os.path.join(d, "report", "report.json")))["variants"]
            per = len(v) // (1 + len(exports))  # rows per variant: 2 with a weights-only twin
            ok = per in (1, 2) and len(v) == per * (1 + len(exports))
            ok = ok and all(rows_equal(v[k * per + i], v[i], exact) for k in range(1, 1 + len(exports)) for i in range(per))
            if per == 2:  # W4A4 / W8A8: the quantized row first, then its weights-only twin, in every group
                for k in range(1 + len(exports)):
                    ok = ok and v[k * 2]["activations"]["quantized"] and v[k * 2 + 1]["activations"]["weights_only_twin"]
                ok = ok and v[0]["output_error"]["kl_mean"] > v[1]["output_error"]["kl_mean"]
            a, b = v[0]["output_error"], v[per]["output_error"]
            line = (f"{fam:10s} {name:19s} rows {len(v)}  KL recipe {a['kl_mean']:.9e} export {b['kl_mean']:.9e}  "
                    f"ppl {a['ppl_quant']:.9f}/{b['ppl_quant']:.9f}  top1 {a['top1']:.4f}/{b['top1']:.4f}  "
                    f"{'equal' if exact else 'rel KL diff %.2e' % (abs(a['kl_mean'] - b['kl_mean']) / a['kl_mean'])}  "
                    f"{'ok' if ok else 'MISMATCH'}")
            print(line)
            if not ok:
                failures.append(line)
        # Not understood: a stray tensor, a missing scale. One line naming the file and the tensor.
        src = os.path.join(work, fam, "nvfp4_experts_only", "export")
        for what in ("extra", "missing"):
            bad = os.path.join(work, fam, f"bad_{what}")
            shutil.copytree(src, bad)
            shard = sorted(f for f in os.listdir(bad) if f.endswith(".safetensors"))[0]
            t = load_file(os.path.join(bad, shard))
            if what == "extra":
                victim = next(k for k in t if k.endswith(".weight_scale_2"))
                t[victim.replace(".weight_scale_2", ".weight_zero_point")] = torch.zeros(1)
                must = [shard, victim.replace(".weight_scale_2", ".weight_zero_point")]
            else:
                victim = next(k for k in t if k.endswith(".weight_scale_2"))
                del t[victim]
                must = [shard, victim.replace(".weight_scale_2", ".weight"), "weight_scale_2"]
            save_file(t, os.path.join(bad, shard), metadata={"format": "pt"})
            idx = os.path.join(bad, "model.safetensors.index.json")
            if os.path.exists(idx):
                j = json.load(open(idx))
                j["weight_map"] = {k: f for k, f in j["weight_map"].items() if f != shard or k in t} | {k: shard for k in t}
                json.dump(j, open(idx, "w"))
            if not expect_failure(moeq, model, bad, ids_file, os.path.join(work, fam, f"bad_{what}_report"), must):
                failures.append(f"{fam} bad_{what}")
    if failures:
        print(f"{len(failures)} failures")
        sys.exit(1)


if __name__ == "__main__":
    main()
