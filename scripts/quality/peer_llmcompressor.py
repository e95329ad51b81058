#!/usr/bin/env python3
"""llm-compressor on the trained model: NVFP4 (experts only) and W4A16 GPTQ (every linear), oneshot.

Runs in its own venv (llm-compressor pins compressed-tensors 0.19; the project venv has 0.20).
Variants:
  nvfp4       QuantizationModifier(scheme="NVFP4"), targets Linear, ignore lm_head, routers
              (mlp.gate) and attention: the sites of moeq's nvfp4_experts_only
  w4a16_gptq  GPTQModifier(scheme="W4A16") (INT4, group 128, symmetric), targets Linear, ignore lm_head
              and routers: the sites of moeq's w4a16_int4_gptq (block 128, dampening 0.01 defaults)
  w4a16_gptq_g32  the same at group 32 (moeq's w4a16_int4_g32_gptq; GPTQ on every linear, attention too)
oneshot linearizes transformers 5's fused Qwen3MoeExperts into per-expert nn.Linear first
(llmcompressor.modeling.moe.linearize). moe_calibrate_all_experts=False: each expert is calibrated
on the tokens routed to it, as moeq and ModelOpt do (llm-compressor's default True sends every token
through every expert). Calibration ids: make_ids.py's. Saved with save_compressed=True.
Writes OUT/<variant>/ and OUT/<variant>/h2h_quantized.json.

Usage: peer_llmcompressor.py MODEL_DIR CALIB_IDS.safetensors OUT_DIR [variant ...]
"""
import json
import os
import sys
import time
import traceback

import compressed_tensors
import llmcompressor
import torch
import transformers
from datasets import Dataset
from safetensors.torch import load_file

IGNORE_EXPERTS_ONLY = ["lm_head", "re:.*mlp\\.gate$", "re:.*self_attn.*"]
IGNORE_ALL_LINEARS = ["lm_head", "re:.*mlp\\.gate$"]


def recipe(v):
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    if v == "nvfp4":
        return QuantizationModifier(targets="Linear", scheme="NVFP4", ignore=IGNORE_EXPERTS_ONLY)
    if v == "w4a16_gptq":
        return GPTQModifier(targets="Linear", scheme="W4A16", ignore=IGNORE_ALL_LINEARS)
    if v == "w4a16_gptq_g32":  # W4A16's INT4 symmetric group scheme at group 32, which divides down_proj's 96
        from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
        w = QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=32)
        return GPTQModifier(config_groups={"group_0": QuantizationScheme(targets=["Linear"], weights=w)},
                            ignore=IGNORE_ALL_LINEARS)
    raise SystemExit(f"unknown variant {v}")


def main():
    from llmcompressor import oneshot
    model_dir, ids_file, out = sys.argv[1:4]
    names = sys.argv[4:] or ["nvfp4", "w4a16_gptq", "w4a16_gptq_g32"]
    ids = load_file(ids_file)["ids"]
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 on the GPU too
    ds = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})
    for v in names:
        d = os.path.join(out, v)
        os.makedirs(d, exist_ok=True)
        rec = {"tool": "llm-compressor", "version": llmcompressor.__version__,
               "compressed_tensors": compressed_tensors.__version__, "transformers": transformers.__version__,
               "torch": torch.__version__, "variant": v, "calib": f"{tuple(ids.shape)} ids from {ids_file}"}
        t0 = time.time()
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
            rec["cuda_available"] = torch.cuda.is_available()  # oneshot's sequential pipeline onloads to it
            tok = transformers.AutoTokenizer.from_pretrained(model_dir)
            rec["recipe"] = repr(recipe(v))
            oneshot(model=model, processor=tok, dataset=ds, recipe=recipe(v), num_calibration_samples=ids.shape[0],
                    max_seq_length=ids.shape[1], moe_calibrate_all_experts=False)
            quantized, skipped = {}, {}
            for name, m in model.named_modules():
                if isinstance(m, torch.nn.Linear):
                    key = ".".join("N" if p.isdigit() else p for p in name.split("."))
                    tgt = quantized if getattr(m, "quantization_scheme", None) is not None else skipped
                    tgt[key] = tgt.get(key, 0) + 1
            rec["quantized_linears"], rec["unquantized_linears"] = quantized, skipped
            rec["calib_s"] = round(time.time() - t0, 1)
            # saved as loaded (float32): casting to bf16 here would also cast the global scales
            model.save_pretrained(d, save_compressed=True)
            tok.save_pretrained(d)
            rec["export"] = "ok"
        except Exception as e:
            rec["error"] = f"{type(e).__name__}: {e}"
            rec["traceback"] = traceback.format_exc()[-4000:]
        rec["wall_s"] = round(time.time() - t0, 1)
        json.dump(rec, open(os.path.join(d, "h2h_quantized.json"), "w"), indent=1)
        print(json.dumps({k: rec[k] for k in rec if k != "traceback"}, indent=1), flush=True)


if __name__ == "__main__":
    main()
