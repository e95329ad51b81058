#!/usr/bin/env python3
"""`moeq compare --exports` on a moeq AWQ export whose scales were folded into norms equals
`moeq compare --recipes` of the same recipe, and the export's folded norms are what makes it so.

Per tiny family (re-drawn so that quantization shows in its logits: compare_exports_modelopt.py
sharpened_copy): `moeq calibrate --gptq-hessians --channel-amax`, `moeq quantize` with the shipped
recipes/nvfp4_experts_only_awq.yaml (AWQ on both expert inputs: gate_up's scales fold into the norm
before the MoE, post_attention_layernorm, and the router), then ONE `moeq compare MODEL --recipes R
--calib C --exports x=EXPORT --eval-ids IDS --eval-dtype float32`: the export's two rows (W4A4 and
its weights-only twin) must give exactly the recipe's two rows (KL mean and max, top-1, perplexity,
cosine, and the mean weight SQNR, which for an AWQ export is against the folded source). Exactly:
the same forward, the same quantized bytes, the export's norm is the recipe's folded norm cast to
the source dtype, and the input scales are the same float32.

That the test can fail:
  - the export's folded norms must differ from the source's (at least one layer's gate_up scales
    moved), report.json's export_aux must name exactly those tensors, and stdout must say so;
  - a copy of the export with the source's norms put back (what a forward that takes the norms from
    the source would run: the weights stay folded) must give a clearly different KL (at least 5%
    relative, seen 20-60%), so equality above is not an accident of norms that do not matter.

Usage: compare_exports_awq.py MOEQ_BINARY TINY_DIR WORK_DIR
"""
import json
import os
import shutil
import subprocess
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from compare_exports_modelopt import sharpened_copy  # noqa: E402

FAMILIES = ["qwen3_moe", "olmoe"]
RECIPE = os.path.join(HERE, "..", "..", "recipes", "nvfp4_experts_only_awq.yaml")
KEYS = ["kl_mean", "kl_max", "top1", "ppl_ref", "ppl_quant", "cosine_mean"]
CALIB_N, CALIB_S, EVAL_N, EVAL_S = 16, 64, 4, 32


def moeq(*args):
    p = subprocess.run([MOEQ, *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"moeq {' '.join(args[:2])} ...: exit {p.returncode}: {p.stderr.strip()[-600:]}")
    return p.stdout


def tensors(d):
    """Every tensor of a checkpoint directory: name -> (file, tensor)."""
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(d, f), framework="pt") as s:
                for k in s.keys():
                    out[k] = (f, s.get_tensor(k))
    return out


def with_source_norms(export, model, names, out):
    """The export with the source's values of `names` (the folded norms) put back."""
    shutil.copytree(export, out)
    src = tensors(model)
    files = {}
    for n in names:
        files.setdefault(tensors(out)[n][0], []).append(n)
    for f, ns in files.items():
        t = load_file(os.path.join(out, f))
        for n in ns:
            t[n] = src[n][1].to(t[n].dtype)
        save_file(t, os.path.join(out, f), metadata={"format": "pt"})
    return out


def compare(model, calib, ids, exports, out):
    stdout = moeq("compare", model, "--recipes", RECIPE, "--calib", calib, "--exports", *exports, "--eval-ids", ids,
                  "--eval-dtype", "float32", "-o", out)
    return json.load(open(os.path.join(out, "report.json")))["variants"], stdout


def main():
    global MOEQ
    MOEQ, tiny, work = sys.argv[1:4]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    failures = []

    def check(ok, line):
        print(f"{'ok  ' if ok else 'FAIL'} {line}", flush=True)
        if not ok:
            failures.append(line)

    for fam in FAMILIES:
        d = os.path.join(work, fam)
        model = os.path.join(d, "model")
        m = sharpened_copy(os.path.join(tiny, fam, "model"), model)
        vocab = m.config.vocab_size
        del m
        g = torch.Generator().manual_seed(16)
        data = os.path.join(d, "calib.jsonl")
        with open(data, "w") as f:
            for row in torch.randint(vocab, (CALIB_N, CALIB_S), generator=g).tolist():
                f.write(json.dumps({"ids": row}) + "\n")
        ids = os.path.join(d, "eval_ids.safetensors")
        save_file({"ids": torch.randint(vocab, (EVAL_N, EVAL_S), generator=g)}, ids)
        calib = os.path.join(d, "calib.h5")
        moeq("calibrate", model, "--data", data, "-o", calib, "--samples", str(CALIB_N), "--seq-len", str(CALIB_S),
             "--gptq-hessians", "--channel-amax", "--quiet")
        export = os.path.join(d, "export")
        moeq("quantize", model, "--recipe", RECIPE, "--calib", calib, "-o", export)

        # The norms the fold changed: the export's tensors that the source holds too, with other values.
        src, exp = tensors(model), tensors(export)
        folded = sorted(n for n, (_, t) in exp.items()
                        if "norm" in n and n in src and src[n][1].shape == t.shape and not torch.equal(src[n][1].float(), t.float()))
        check(len(folded) > 0, f"{fam}: the AWQ export folded {len(folded)} norms: {folded}")

        v, stdout = compare(model, calib, ids, [f"x={export}"], os.path.join(d, "report"))
        ok = len(v) == 4 and v[0]["activations"]["quantized"] and v[1]["activations"]["weights_only_twin"]
        for i in range(2):
            a, b = v[i], v[2 + i] if len(v) == 4 else v[i]
            ok = ok and all(a["output_error"][k] == b["output_error"][k] for k in KEYS)
            ok = ok and a["summary"]["mean_sqnr_db"] == b["summary"]["mean_sqnr_db"]
        a, b = v[0]["output_error"], v[2]["output_error"] if len(v) == 4 else {}
        check(ok, f"{fam}: W4A4 KL recipe {a['kl_mean']:.9e} export {b.get('kl_mean', float('nan')):.9e}, "
                  f"ppl {a['ppl_quant']:.6f} / {b.get('ppl_quant', float('nan')):.6f}, top-1 {a['top1']:.4f} / "
                  f"{b.get('top1', float('nan')):.4f}, mean SQNR {v[0]['summary']['mean_sqnr_db']:.4f} / "
                  f"{v[-2]['summary']['mean_sqnr_db']:.4f} dB; weights-only KL {v[1]['output_error']['kl_mean']:.9e} / "
                  f"{v[-1]['output_error']['kl_mean']:.9e}: {'exactly equal' if ok else 'NOT EQUAL'}")
        xa = v[2]["export_aux"] if len(v) == 4 else None
        check(v[0]["export_aux"] is None and xa is not None and xa["differing_tensors"] == folded and xa["tensors"] >= len(folded),
              f"{fam}: report.json export_aux {xa}")
        line = next((ln for ln in stdout.splitlines() if "aux tensors from the export" in ln), "")
        check(f"{len(folded)} differ from the source's" in line, f"{fam}: stdout: {line.strip()}")

        # The same export with the source's norms: a forward reading the source's norms would run this.
        unfolded = with_source_norms(export, model, folded, os.path.join(d, "export_source_norms"))
        w, _ = compare(model, calib, ids, [f"x={unfolded}"], os.path.join(d, "report_source_norms"))
        kl_r, kl_u = v[0]["output_error"]["kl_mean"], w[2]["output_error"]["kl_mean"]
        ppl_u = w[2]["output_error"]["ppl_quant"]
        check(abs(kl_u - kl_r) >= 0.05 * kl_r and w[2]["export_aux"]["differing"] == 0,
              f"{fam}: with the source's norms KL {kl_u:.6e} ppl {ppl_u:.4f} vs the recipe's KL {kl_r:.6e} ppl "
              f"{a['ppl_quant']:.4f} ({100 * (kl_u - kl_r) / kl_r:+.1f}%): the folded norms matter")
    print(f"{len(FAMILIES)} families: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
