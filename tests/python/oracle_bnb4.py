#!/usr/bin/env python3
"""bitsandbytes NF4/FP4 oracle for tests/formats/test_bnb4.cpp.

Usage: oracle_bnb4.py OUT_DIR [--device cuda]

Quantizes a fixed set of inputs (random and adversarial) with
bitsandbytes.functional.quantize_4bit (compress_statistics off and on), each expert of a
3D input on its own, and writes OUT_DIR/bnb4_<device>.safetensors:
  in.<input>                      the input tensor
  <case>.weight|absmax|quant_map|nested_absmax|nested_quant_map|nested_offset
                                  QuantState parts, with a leading E dim for 3D inputs
  <case>.qs_json                  expert 0's QuantState.as_dict(packed=True)['quant_state.bitsandbytes__<qt>']
with <case> = <input>__<nf4|fp4>_<blocksize>_<plain|dq>.

bitsandbytes computes these differently on CPU (pure-torch "default" backend, a lookup table
for the nested 8-bit absmax) and on CUDA (its kernels, built with --use_fast_math); see
src/formats/bnb4/bnb4_kernels.h. moeq follows the CUDA kernels, which wrote the checkpoints in
circulation, so their output is the reference: `--device cuda` on a GPU machine wrote
tests/data/bnb4_cuda_ref.safetensors (bitsandbytes 0.50.2, torch 2.11.0+cu130, H200).
On CPU (the ctest fixture) this script quantizes that file's inputs again, adds <case>.deq,
bitsandbytes' own dequantize_4bit of the CUDA parts (float32), and copies the reference
into OUT_DIR.
"""
import os
import shutil
import sys

# Eager bitsandbytes: its dequantize helpers are wrapped in torch.compile, which only
# costs minutes here (one compile per shape) and computes the same values.
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import numpy as np
import torch
import bitsandbytes
import bitsandbytes.functional as F
import bnb_cpu_pin  # noqa: F401  one CPU decoding path on every host (AVX2, AVX-512)
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.join(HERE, "..", "data", "bnb4_cuda_ref.safetensors")

# The NF4 decision thresholds of bitsandbytes' CUDA kernel (dQuantizeNF4), as float32,
# equal to the float32 midpoints of its NF4 table that the CPU path uses.
NF4_T = [-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
         -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
         0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
         0.5016634166240692, 0.6427869200706482, 0.8614784181118011]
# FP4 thresholds on |x| of the CUDA kernel (dQuantizeFP4) and the float32 midpoints of
# the FP4 table (CPU path); they differ by a few ulps.
FP4_T_CUDA = [0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333]
FP4_T_MID = [0.0026041667442768812, 0.0859375, 0.2083333432674408, 0.2916666865348816,
             0.4166666865348816, 0.5833333730697632, 0.8333333730697632]


def f32(v):
    return torch.tensor(v, dtype=torch.float32)


def around(ts):
    """Each threshold and its float32 neighbours."""
    t = f32(ts)
    return torch.cat([t, torch.nextafter(t, f32(np.inf).expand_as(t)), torch.nextafter(t, f32(-np.inf).expand_as(t))])


def adversarial(dtype, g):
    """[32, 128] = 64 blocks of 64 elements, one scenario per block (blocksize 64)."""
    huge = {torch.float16: (6.0e4, 65504.0, 2.0 ** 15), torch.bfloat16: (1e30, 3e38, 2.0 ** 127),
            torch.float32: (1e30, 3e38, 2.0 ** 127)}[dtype]
    tiny = {torch.float16: (1e-7, 3e-5), torch.bfloat16: (1e-40, 1e-37), torch.float32: (1e-40, 1e-37)}[dtype]
    b = torch.randn(64, 64, generator=g)
    b[0] = 0.0                                               # all zeros
    b[1] = 0.5                                               # all equal
    b[2] = -0.25                                             # all equal, negative
    b[3] = -0.0                                              # negative zeros
    b[4] = torch.randint(-3, 4, (64,), generator=g).float() * tiny[0]  # subnormals and zeros
    b[5] = torch.randn(64, generator=g) * tiny[1]            # tiny (normal or subnormal)
    b[6, 7] = huge[0]                                        # outlier
    b[7] = torch.randn(64, generator=g) * (huge[1] / 10)     # absmax near the type's max
    b[7, 3] = -huge[1]
    b[8, 60] = huge[2]
    for k, scale in ((9, 1.0), (10, -1.0), (11, 0.75), (12, 3.3), (13, 2.0 ** -10)):
        v = torch.zeros(64)
        t = around(NF4_T) * abs(scale)                      # ties (exact for powers of two)
        v[: len(t)] = t
        v[len(t)] = scale                                    # the block absmax (signed)
        v[len(t) + 1:] = -0.0
        b[k] = v
    for k, scale in ((14, 1.0), (15, 0.6), (16, -2.0)):
        t = torch.cat([around(FP4_T_CUDA), f32(FP4_T_MID)]) * abs(scale)  # 28 values
        v = torch.full((64,), -0.0)
        v[:28], v[28:56], v[63] = t, -t, scale
        b[k] = v
    b[17] = f32([1.0, -1.0, 1e-3, -1e-3, 1e-4, -1e-4, 0.0, -0.0] * 8)  # zero signs in FP4
    b[18] = torch.where(torch.arange(64) % 2 == 0, 0.3, -0.3)             # all |x| equal
    b[19, ::3] = -0.0
    b[20] = torch.randn(64, generator=g) * 1e-20
    scales = 10.0 ** (torch.rand(43, 1, generator=g) * 6 - 4)
    b[21:] = b[21:] * scales
    return b.reshape(32, 128).to(dtype)


def inputs():
    g = torch.Generator().manual_seed(20240607)
    x = {}
    x["gauss_f32"] = torch.randn(64, 256, generator=g) * 0.02
    x["dq_big"] = torch.randn(300, 128, generator=g) * 0.05          # 600 blocks of 64: nested 256+256+88
    x["gauss_bf16"] = (torch.randn(48, 192, generator=g) * 0.03).to(torch.bfloat16)
    x["gauss_f16"] = (torch.randn(48, 192, generator=g) * 0.03).to(torch.float16)
    torch.manual_seed(7)  # StudentT samples from the global generator
    x["student_t"] = torch.distributions.StudentT(3.0).sample((64, 128)) * 0.01
    x["adv_f32"] = adversarial(torch.float32, g)
    x["adv_bf16"] = adversarial(torch.bfloat16, g)
    x["adv_f16"] = adversarial(torch.float16, g)
    x["odd_f32"] = torch.randn(5, 27, generator=g)                     # 135 elements: 64+64+7, odd
    x["stack_f32"] = torch.randn(4, 32, 64, generator=g) * torch.tensor([0.01, 1.0, 0.1, 30.0]).view(4, 1, 1)
    x["stack_odd"] = torch.randn(3, 7, 9, generator=g)                 # 63 elements per expert
    x["zeros"] = torch.zeros(8, 64)
    return x


def cases():
    c = []
    for qt in ("nf4", "fp4"):
        for dq in (False, True):
            for bs in (32, 64, 128, 4096):
                c.append(("gauss_f32", qt, bs, dq))
            for bs in (32, 64, 128):
                c.append(("adv_f32", qt, bs, dq))
            for name in ("adv_bf16", "adv_f16", "gauss_bf16", "gauss_f16", "odd_f32", "stack_f32", "stack_odd",
                         "zeros", "student_t"):
                c.append((name, qt, 64, dq))
            c.append(("stack_f32", qt, 128, dq))
            c.append(("dq_big", qt, 64, dq))
        c.append(("dq_big", qt, 32, True))
        c.append(("dq_big", qt, 256, True))
    return c


def case_name(inp, qt, bs, dq):
    return f"{inp}__{qt}_{bs}_{'dq' if dq else 'plain'}"


def quantize_one(w, qt, bs, dq):
    q, st = F.quantize_4bit(w, blocksize=bs, quant_type=qt, compress_statistics=dq)
    parts = {"weight": q, "absmax": st.absmax, "quant_map": st.code}
    if dq:
        parts.update(nested_absmax=st.state2.absmax, nested_quant_map=st.state2.code, nested_offset=st.offset)
    d = st.as_dict(packed=True)
    return {k: v.detach().cpu().clone() for k, v in parts.items()}, d[f"quant_state.bitsandbytes__{qt}"].cpu()


def dequantize_one(parts, qt, bs, shape, device):
    """bitsandbytes' own dequantize_4bit of one expert's parts, to float32, through its
    pure-torch kernel on every host (bnb_cpu_pin.py: its C library's AVX-512 kernel decodes
    rows shorter than a block with the wrong absmax)."""
    p = {k: v.to(device) for k, v in parts.items()}
    state2, offset = None, None
    if "nested_absmax" in p:
        state2 = F.QuantState(absmax=p["nested_absmax"], code=p["nested_quant_map"], blocksize=256,
                              dtype=torch.float32)
        offset = p["nested_offset"]
    st = F.QuantState(absmax=p["absmax"], shape=torch.Size(shape), code=p["quant_map"], blocksize=bs,
                      quant_type=qt, dtype=torch.float32, offset=offset, state2=state2)
    return F.dequantize_4bit(p["weight"], st).cpu()


def run_cases(x, device):
    out = {f"in.{k}": v.contiguous() for k, v in x.items()}
    for inp, qt, bs, dq in cases():
        w = x[inp].to(device)
        experts = [w] if w.dim() == 2 else list(w)
        per = [quantize_one(e.contiguous(), qt, bs, dq) for e in experts]
        name = case_name(inp, qt, bs, dq)
        for k in per[0][0]:
            t = [p[0][k] for p in per]
            out[f"{name}.{k}"] = t[0] if w.dim() == 2 else torch.stack(t)
        out[f"{name}.qs_json"] = per[0][1]
    return out


def dequantize_ref(r):
    """bitsandbytes (here, on CPU) dequantizing the parts its CUDA kernels wrote."""
    deq = {}
    for inp, qt, bs, dq in cases():
        name = case_name(inp, qt, bs, dq)
        w = r[f"in.{inp}"]
        keys = [k for k in ("weight", "absmax", "quant_map", "nested_absmax", "nested_quant_map", "nested_offset")
                if f"{name}.{k}" in r]
        if w.dim() == 2:
            deq[f"{name}.deq"] = dequantize_one({k: r[f"{name}.{k}"] for k in keys}, qt, bs, w.shape, "cpu")
        else:
            deq[f"{name}.deq"] = torch.stack([
                dequantize_one({k: r[f"{name}.{k}"][e] for k in keys}, qt, bs, w.shape[1:], "cpu")
                for e in range(w.shape[0])])
    return deq


def main():
    args = sys.argv[1:]
    out_dir = args[0]
    device = args[args.index("--device") + 1] if "--device" in args else "cpu"
    os.makedirs(out_dir, exist_ok=True)
    print(f"oracle: bitsandbytes {bitsandbytes.__version__}, torch {torch.__version__}, device {device}")
    if device == "cuda":
        print(f"gpu: {torch.cuda.get_device_name()}")
        x = inputs()
    else:
        ref = load_file(REF)
        x = {k[3:]: v for k, v in ref.items() if k.startswith("in.")}
    out = run_cases(x, device)
    if device == "cpu":
        out.update(dequantize_ref(ref))
        shutil.copyfile(REF, os.path.join(out_dir, "bnb4_cuda_ref.safetensors"))
    path = os.path.join(out_dir, f"bnb4_{device}.safetensors")
    save_file(out, path)
    print(f"wrote {len(cases())} cases to {path}")


if __name__ == "__main__":
    main()
