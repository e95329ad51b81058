#!/usr/bin/env python3
"""`moeq compare --exports` reads a peer's export: NVIDIA ModelOpt's, checked against an oracle.

The tiny random Qwen3-MoE of make_tiny.py, re-drawn with weights that make its logits sharp and
saved in bfloat16 (as published checkpoints are, so the export's unquantized tensors equal the
source's), is quantized by NVIDIA ModelOpt itself
(scripts/quality/peer_modelopt.py max: NVFP4_EXPERTS_ONLY_CFG, W4A4, export_hf_checkpoint) on CPU
in seconds. Then on the same eval windows:
  - moeq compare SRC --exports modelopt=EXPORT --eval-ids IDS --eval-dtype float32: moeq's verify
    reader decodes the export, its native forward runs it, the experts' inputs fake-quantized with
    the export's own input_scale (the W4A4 row) or not (the weights-only twin);
  - the oracle, scripts/quality/eval_exports.py: its own decode of the export's tensors into a
    transformers float32 model, the same activation fake quantization written in Python
    (--weights-only for the twin).
They must agree within float32 tolerance: perplexities within 1e-5 relative, mean KL within 5%
(2% for weights only), top-1 within one token (the tolerances of compare_calib_oracle.py, whose
forwards are the same two). moeq must also count every expert linear as quantized and none else.

With MOEQ_PY_LLMC set to the python of a venv with llm-compressor 0.14 (scripts/quality/head_to_head.sh
makes one), llm-compressor's NVFP4 W4A4 export (compressed-tensors nvfp4-pack-quantized, per-expert
input_global_scale) is checked the same way.

Usage: compare_exports_modelopt.py MOEQ_BINARY TINY_DIR WORK_DIR
"""
import json
import os
import shutil
import subprocess
import sys

import torch
import transformers
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
Q = os.path.join(ROOT, "scripts", "quality")
N, S = 3, 32


def sharpened_copy(model_dir, out):
    """The tiny model re-drawn so that quantization shows in its output, saved in bfloat16.

    make_tiny.py's init (weights of std 0.02, norms near 0) gives nearly uniform logits whose KL
    under quantization (~1e-12) is float32 noise; here weights of std 1/sqrt(in) (embeddings and
    lm_head twice that) and norms near 1, so the experts' quantization costs a KL of ~0.01-0.05."""
    m = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * p.shape[-1] ** -0.5 * (2.0 if "embed" in n or "lm_head" in n else 1.0))
    m.to(torch.bfloat16).save_pretrained(out)
    return m


def main():
    moeq, tiny, work = sys.argv[1:4]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    src = os.path.join(work, "src")
    m = sharpened_copy(os.path.join(tiny, "qwen3_moe", "model"), src)
    cfg = m.config
    layers, experts = cfg.num_hidden_layers, cfg.num_experts
    del m
    g = torch.Generator().manual_seed(11)
    save_file({"ids": torch.randint(cfg.vocab_size, (8, S), generator=g)}, os.path.join(work, "calib_ids.safetensors"))
    ids_file = os.path.join(work, "eval_ids.safetensors")
    save_file({"ids": torch.randint(cfg.vocab_size, (N, S), generator=g)}, ids_file)

    py = sys.executable
    calib = os.path.join(work, "calib_ids.safetensors")
    peers = [("modelopt", py, "peer_modelopt.py", "mo", "h2h_quantizers.json")]
    py_llmc = os.environ.get("MOEQ_PY_LLMC")  # optional: a venv with llm-compressor (head_to_head.sh makes one)
    if py_llmc:
        for f in ("tokenizer.json", "tokenizer_config.json"):  # llm-compressor's oneshot wants a processor
            shutil.copy(os.path.join(ROOT, "..", "shared", "models", "qwen3moe-tiny", f), src)
        peers.append(("llmcompressor", py_llmc, "peer_llmcompressor.py", "llmc", "h2h_quantized.json"))
    specs = []
    for name, interp, script, out_dir, record in peers:
        variant = "max" if name == "modelopt" else "nvfp4"
        peer = subprocess.run([interp, os.path.join(Q, script), src, calib, os.path.join(work, out_dir), variant],
                              capture_output=True, text=True)
        export = os.path.join(work, out_dir, variant)
        rec = json.load(open(os.path.join(export, record)))
        if rec.get("export") != "ok":
            print(peer.stdout[-3000:], peer.stderr[-3000:])
            sys.exit(f"{name} did not export: {rec.get('error')}")
        print(f"{name} {rec['version']}: exported in {rec['wall_s']} s")
        specs.append(f"{name}={export}")

    subprocess.run([moeq, "compare", src, "--exports", *specs, "--eval-ids", ids_file, "--eval-dtype", "float32",
                    "-o", os.path.join(work, "report")], check=True, stdout=subprocess.DEVNULL)
    rep = json.load(open(os.path.join(work, "report", "report.json")))["variants"]
    oracle = {}
    for mode, extra in (("w4a4", []), ("weights", ["--weights-only"])):
        out = os.path.join(work, f"oracle_{mode}.json")
        subprocess.run([py, os.path.join(Q, "eval_exports.py"), *extra, src, ids_file, out, *specs, "--chunk", str(N)],
                       check=True, stdout=subprocess.DEVNULL)
        oracle[mode] = json.load(open(out))
    failures = []
    rows = [(rep[2 * k], "w4a4", k) for k in range(len(specs))] + [(rep[2 * k + 1], "weights", k) for k in range(len(specs))]
    for row, mode, k in rows:
        got, want = row["output_error"], oracle[mode]["variants"][k]
        kl_tol = 0.05 if mode == "w4a4" else 0.02
        ok = (abs(got["ppl_ref"] - oracle[mode]["ppl_ref"]) <= 1e-5 * oracle[mode]["ppl_ref"]
              and abs(got["ppl_quant"] - want["ppl_quant"]) <= 1e-5 * want["ppl_quant"]
              and abs(got["kl_mean"] - want["kl_mean"]) <= kl_tol * want["kl_mean"]
              and abs(got["top1"] - want["top1"]) <= 1.0 / (N * (S - 1)) + 1e-12
              and row["activations"]["quantized"] == (mode == "w4a4")
              and row["quantized_sites"] == 3 * layers * experts == want["quantized_linears"]["experts"]
              and want["quantized_linears"]["other"] == 0 and got["kl_mean"] > 0)
        line = (f"{row['name']:32s} ppl {got['ppl_ref']:.6f} -> {got['ppl_quant']:.6f} (oracle {oracle[mode]['ppl_ref']:.6f} -> "
                f"{want['ppl_quant']:.6f})  KL {got['kl_mean']:.6e} (oracle {want['kl_mean']:.6e})  top1 {got['top1']:.4f} "
                f"({want['top1']:.4f})  quantized linears {row['quantized_sites']}  {'ok' if ok else 'MISMATCH'}")
        print(line)
        if not ok:
            failures.append(line)
    for k in range(len(specs)):
        if not rep[2 * k]["output_error"]["kl_mean"] > rep[2 * k + 1]["output_error"]["kl_mean"]:
            failures.append(f"{specs[k]}: W4A4 KL not above weights-only KL")
    if failures:
        sys.exit(f"{len(failures)} mismatches")


if __name__ == "__main__":
    main()
