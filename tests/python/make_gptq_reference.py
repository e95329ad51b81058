"""Writes tests/data/gptq_ref.safetensors: llm-compressor's GPTQ (quantize_weight, the eager
CPU path) on fixed weights and Hessians, the oracle of moeq's GPTQ (tests/quant/test_gptq.cpp).

Run once by hand (llm-compressor is not in CI's environment; its output is committed):
    pip install --no-deps --target /tmp/llmc_pkg llmcompressor==0.14.0.1
    PYTHONPATH=/tmp/llmc_pkg python tests/python/make_gptq_reference.py tests/data/gptq_ref.safetensors
Only llm-compressor's gptq_quantize.py and helpers.py are loaded (by file, so that the package's
__init__ and its dataset dependencies are not imported); they run on compressed-tensors from
the venv (0.20.0; llm-compressor 0.14.0.1 pins 0.19.0, and the code used here is the same).

Fixture: W [E=2, 32, 256] (bf16 values), H [2, 256, 256] float32 (2/n X^T X of correlated
inputs with per-channel scales; one dead input channel in expert 0), and for each case the
quantized weights llm-compressor returns (float32). The scales are the ones moeq's formats
compute from W (transcribed here in torch ops, stored so the test checks moeq gets the same):
  nvfp4: block scale = fp8(block amax / (6 * amax / 2688)), effective scale fp8 value * amax / 2688
  int4:  group 128 symmetric, scale = bf16(max(-min, max) / 7.5)
They are passed as float32 effective scales per group (strategy group), so the reference's
x / scale and q * scale are the same float32 operations as moeq's (llm-compressor on a bf16
model would multiply back in bf16; moeq keeps the exact product, which is what the export decodes).
"""
import importlib.util
import sys
import types

import torch
from safetensors.torch import save_file

ROOT = None
for p in sys.path:
    spec_dir = p.rstrip("/") + "/llmcompressor/modifiers/gptq/"
    try:
        open(spec_dir + "gptq_quantize.py").close()
        ROOT = spec_dir
        break
    except OSError:
        pass
if ROOT is None:
    sys.exit("llmcompressor not found on PYTHONPATH (see the docstring)")
for name in ["llmcompressor", "llmcompressor.modifiers", "llmcompressor.modifiers.gptq"]:
    m = types.ModuleType(name)
    m.__path__ = []
    sys.modules[name] = m


def load(mod, file):
    spec = importlib.util.spec_from_file_location(mod, ROOT + file)
    m = importlib.util.module_from_spec(spec)
    sys.modules[mod] = m
    spec.loader.exec_module(m)
    return m


load("llmcompressor.modifiers.gptq.helpers", "helpers.py")
gq = load("llmcompressor.modifiers.gptq.gptq_quantize", "gptq_quantize.py")
from compressed_tensors.quantization import QuantizationArgs  # noqa: E402


def nvfp4_eff(w):
    E, out, n = w.shape
    amax = w.abs().amax(dim=(1, 2))  # [E]
    gs = amax / 2688.0
    bmax = w.view(E, out, n // 16, 16).abs().amax(-1)
    s = bmax / (6.0 * gs).view(E, 1, 1)
    s = torch.where(s == 0, torch.ones_like(s), s).clamp(2.0**-9, 448.0)
    fp8 = s.to(torch.float8_e4m3fn)
    eff = fp8.float() * gs.view(E, 1, 1)
    return eff, fp8.view(torch.uint8), gs


def int4_eff(wb, group):
    E, out, n = wb.shape
    x = wb.view(E, out, n // group, group)
    mn = x.amin(-1).clamp_max(0)
    mx = x.amax(-1).clamp_min(0)
    scale = torch.maximum(-mn, mx) / torch.tensor(7.5, dtype=wb.dtype)
    scale = torch.where(scale == 0, torch.tensor(0.0078125, dtype=wb.dtype), scale)
    return scale.float(), scale


def main(out_path):
    torch.manual_seed(20261203)
    E, out, n, tokens = 2, 32, 256, 768
    w = (torch.randn(E, out, n) * 0.02)
    w[:, :, 17] *= 8  # an outlier input channel
    w = w.to(torch.bfloat16)
    ch = torch.exp(torch.randn(E, 1, n) * 0.7)
    mix = torch.eye(n) + 0.15 * torch.randn(E, n, n)
    x = (torch.randn(E, tokens, n) @ mix) * ch
    x[0, :, 5] = 0  # a dead input channel: diag(H) = 0
    inp = (2.0**0.5) * x.transpose(1, 2).float()
    h = (inp @ inp.transpose(1, 2)) / tokens
    tensors = {"w": w.contiguous(), "h": h.contiguous()}
    wf = w.float()
    eff4, fp8, gs = nvfp4_eff(wf)
    tensors["nvfp4.block_scale"] = fp8.contiguous()
    tensors["nvfp4.global_scale"] = gs.contiguous()
    effi, scale_bf16 = int4_eff(w, 128)
    tensors["int4.scale"] = scale_bf16.contiguous()
    cases = []
    for fmt, eff, group, kind in [("nvfp4", eff4, 16, "float"), ("int4", effi, 128, "int")]:
        for actorder in [None, "weight"]:
            for bs in [128, 64]:
                if bs == 64 and actorder is None and fmt == "int4":
                    continue
                args = QuantizationArgs(num_bits=4, type=kind, strategy="group", group_size=group, symmetric=True,
                                        actorder=actorder)
                q, losses, rtn = gq.quantize_weight(wf.clone(), h.clone(), eff.clone(), torch.zeros_like(eff), None,
                                                    args, blocksize=bs, percdamp=0.01)
                name = f"{fmt}.act{int(actorder is not None)}.b{bs}"
                tensors[name] = q.float().contiguous()
                cases.append(name)
                print(name, "loss", losses.tolist(), "rtn", rtn.tolist())
    save_file(tensors, out_path, metadata={"cases": ",".join(cases), "damp": "0.01",
                                           "reference": "llmcompressor 0.14.0.1 quantize_weight (eager), compressed-tensors 0.20.0"})


if __name__ == "__main__":
    main(sys.argv[1])
