#!/usr/bin/env python3
"""NVIDIA ModelOpt on the trained model: NVFP4 experts-only, four calibration algorithms, unified HF export.

Variants (all with NVFP4_EXPERTS_ONLY_CFG's quantizer patterns: `*.experts.*weight_quantizer` /
`*.experts.*input_quantizer`, NVFP4 W4A4, dynamic per-block activation scales, everything else off):
  max       NVFP4_EXPERTS_ONLY_CFG as shipped (algorithm max)
  mse       weights static, algorithm {method: mse, fp8_scale_sweep: true}
            (the quant_cfg of modelopt_recipes/general/ptq/nvfp4_experts_only_mse-kv_fp8_cast.yaml, KV off)
  awq_lite  algorithm awq_lite (NVFP4_AWQ_LITE_CFG's algorithm on the experts-only patterns)
  gptq      weights static, algorithm {method: gptq} (nvfp4_default-kv_none-gptq.yaml's algorithm,
            experts-only patterns, not layerwise)
Calibration: the ids of make_ids.py (float32, batches of 8; on H2H_DEVICE, default cpu). Export: export_hf_checkpoint(dtype=bf16).
Writes OUT/<variant>/ (the export) and OUT/<variant>/h2h_quantizers.json (which quantizers were
enabled, on which modules, and any error).

Usage: peer_modelopt.py MODEL_DIR CALIB_IDS.safetensors OUT_DIR [variant ...]
"""
import copy
import fnmatch
import json
import os
import sys
import time
import traceback

import torch
import transformers
from safetensors.torch import load_file

import modelopt
import modelopt.torch.quantization as mtq
from modelopt.torch.export import export_hf_checkpoint
from modelopt.torch.quantization.nn import TensorQuantizer


def experts_only(weight_static=False, algorithm="max"):
    cfg = copy.deepcopy(mtq.NVFP4_EXPERTS_ONLY_CFG)
    if weight_static:
        for e in cfg["quant_cfg"]:
            if e.get("quantizer_name", "").endswith("weight_quantizer") and "cfg" in e:
                e["cfg"]["block_sizes"]["type"] = "static"
    cfg["algorithm"] = algorithm
    return cfg


VARIANTS = {
    "max": lambda: experts_only(),
    "mse": lambda: experts_only(True, {"method": "mse", "fp8_scale_sweep": True}),
    "awq_lite": lambda: experts_only(False, "awq_lite"),
    "gptq": lambda: experts_only(True, {"method": "gptq"}),
}


def quantizer_summary(model):
    on, off = [], 0
    for name, m in model.named_modules():
        if isinstance(m, TensorQuantizer):
            if m.is_enabled:
                on.append(name)
            else:
                off += 1
    groups = {}
    for n in on:  # collapse layer / expert indices
        key = ".".join("N" if p.isdigit() else p for p in n.split("."))
        groups[key] = groups.get(key, 0) + 1
    return {"enabled": len(on), "disabled": off, "enabled_patterns": groups}


def main():
    model_dir, ids_file, out = sys.argv[1:4]
    names = sys.argv[4:] or list(VARIANTS)
    ids = load_file(ids_file)["ids"]
    dev = os.environ.get("H2H_DEVICE", "cpu")
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 on the GPU too
    os.makedirs(out, exist_ok=True)
    for v in names:
        d = os.path.join(out, v)
        os.makedirs(d, exist_ok=True)
        rec = {"tool": "nvidia-modelopt", "version": modelopt.__version__, "variant": v,
               "transformers": transformers.__version__, "torch": torch.__version__,
               "calib": f"{tuple(ids.shape)} ids from {ids_file}"}
        t0 = time.time()
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
            model.to(dev).eval()
            rec["device"] = dev
            rec["experts_module"] = type(model.model.layers[0].mlp.experts).__name__
            cfg = VARIANTS[v]()

            def loop(m):
                with torch.no_grad():
                    for i in range(0, ids.shape[0], 8):
                        m(ids[i:i + 8].to(dev))

            model = mtq.quantize(model, cfg, forward_loop=loop)
            rec["quantizers"] = quantizer_summary(model)
            rec["quantized_module_class"] = type(model.model.layers[0].mlp.experts).__name__
            rec["calib_s"] = round(time.time() - t0, 1)
            export_hf_checkpoint(model, dtype=torch.bfloat16, export_dir=d)
            rec["export"] = "ok"
        except Exception as e:  # a peer's failure is a result: record it
            rec["error"] = f"{type(e).__name__}: {e}"
            rec["traceback"] = traceback.format_exc()[-4000:]
        rec["wall_s"] = round(time.time() - t0, 1)
        json.dump(rec, open(os.path.join(d, "h2h_quantizers.json"), "w"), indent=1)
        print(json.dumps({k: rec[k] for k in rec if k != "traceback"}, indent=1), flush=True)


if __name__ == "__main__":
    main()
