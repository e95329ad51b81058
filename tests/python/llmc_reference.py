#!/usr/bin/env python3
"""llm-compressor's own NVFP4A16 export of the tiny Qwen3-MoE, reduced to a small JSON reference
(tests/data/llmc_qwen3_moe_nvfp4a16.json) that tests/python/consumer_transformers_ct.py compares
moeq's compressed-tensors export with: per-expert tensor names, dtypes, shapes, the config group's
weight args and every weight_global_scale. Also records what transformers' from_pretrained makes
of llm-compressor's export (the logit cosine vs the source), which answers whose convention is
wrong when moeq's export loads badly (issue 15 item 8).

Not run in CI: llmcompressor 0.14 pins compressed-tensors 0.19 while the venv has 0.20, so it is
installed apart (`pip install --no-deps --target DIR llmcompressor==0.14.0.1
compressed-tensors==0.19.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 pyarrow==26.0.1
xxhash==4.1.0 auto-round==0.15.1 py-cpuinfo==9.0.0 pandas==3.1.1 python-dateutil==4.0.0
tzdata==2026.6`) and this script runs twice:
  PYTHONPATH=DIR python llmc_reference.py quantize TINY/qwen3_moe/model WORK
  python llmc_reference.py describe TINY/qwen3_moe/model WORK OUT.json    (the venv's transformers)
"""
import hashlib
import json
import sys
from pathlib import Path

import torch
import transformers
from safetensors import safe_open

PROBE = "model.layers.0.mlp.experts.0.gate_proj.weight"


def fingerprint(model_dir):
    """sha256 of one source expert weight: the reference holds only for these weights."""
    with safe_open(str(Path(model_dir, "model.safetensors")), "pt") as h:
        return hashlib.sha256(h.get_tensor(PROBE).contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def quantize(src, work):
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    m = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
    # experts only, as recipes/nvfp4_experts_only.yaml; weight-only (no calibration data)
    recipe = QuantizationModifier(targets="Linear", scheme="NVFP4A16", ignore=["lm_head", "re:.*mlp.gate$", "re:.*self_attn.*"])
    oneshot(model=m, recipe=recipe, output_dir=str(Path(work, "llmc_nvfp4a16")))


def describe(src, work, out):
    q = Path(work, "llmc_nvfp4a16")
    ids = torch.randint(256, (2, 12), generator=torch.Generator().manual_seed(0))
    logits = []
    for d in (src, q):
        m = transformers.AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32).eval()
        with torch.no_grad():
            logits.append(m(ids).logits.flatten())
    cos = torch.nn.functional.cosine_similarity(logits[0], logits[1], dim=0).item()
    modules = {}
    with safe_open(str(q / "model.safetensors"), "pt") as h:
        for k in h.keys():
            if ".experts." not in k:
                continue
            mod, suffix = k.rsplit(".", 1)
            t = h.get_tensor(k)
            e = modules.setdefault(mod, {"tensors": {}})
            e["tensors"][suffix] = [str(t.dtype).replace("torch.", ""), list(t.shape)]
            if suffix == "weight_global_scale":
                e["global_scale"] = t.float().item()
    cfg = json.loads((q / "config.json").read_text())["quantization_config"]
    ref = {"source_fingerprint": {PROBE: fingerprint(src)},
           "llmcompressor": "0.14.0.1", "transformers_loading": transformers.__version__,
           "config_group": next(iter(cfg["config_groups"].values())), "format": cfg["format"],
           "transformers_from_pretrained_cosine": cos, "modules": modules}
    Path(out).write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")
    print(f"{len(modules)} expert modules; transformers {transformers.__version__} from_pretrained of llm-compressor's export: cosine {cos:.4f}")


if __name__ == "__main__":
    {"quantize": quantize, "describe": describe}[sys.argv[1]](*sys.argv[2:])
