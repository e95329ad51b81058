"""Oracle fixtures for the fp8 format: NVIDIA ModelOpt's FP8 export math, run on CPU.

Scales come from ModelOpt's own functions (a TensorQuantizer holding the amax,
export_amax's sanitizing, get_scaling_factor: amax / 448), codes from its
to_quantized_weight (weight / scale cast to float8_e4m3fn) and, cross-checked, from
torch's `(w.float() / scale).clamp(-448, 448).to(float8_e4m3fn)`. ModelOpt does not
clamp: for a given amax below the weights' own it would store NaN codes, so those
cases use the clamped torch formula (what moeq stores).
Writes <out>/fp8.safetensors: per case c<NNN>.{w, params=[per_channel, amax_given],
amax (if given), weight, weight_scale}. Usage: oracle_fp8.py OUT_DIR
"""
import os
import sys
import warnings

import torch
from safetensors.torch import save_file

warnings.filterwarnings("ignore")
import modelopt  # noqa: E402
from modelopt.torch.export.model_config import QUANTIZATION_FP8, QUANTIZATION_FP8_PC_PT  # noqa: E402
from modelopt.torch.export.quant_utils import get_scaling_factor, to_quantized_weight  # noqa: E402
from modelopt.torch.quantization.config import QuantizerAttributeConfig  # noqa: E402
from modelopt.torch.quantization.nn import TensorQuantizer  # noqa: E402

DTYPES = [torch.bfloat16, torch.float16, torch.float32]
F8 = torch.float8_e4m3fn


def modelopt_fp8(w, channel, amax=None):
    """(codes, scale) of one 2D weight as ModelOpt exports it."""
    q = TensorQuantizer(QuantizerAttributeConfig(num_bits=(4, 3), axis=0 if channel else None))
    q.amax = (w.float().abs().amax(1, keepdim=True) if channel else w.float().abs().amax()) if amax is None else amax
    scale = get_scaling_factor(q)  # [1] per tensor, [out] per channel
    ref = (w.float() / (scale[:, None] if channel else scale)).clamp(-448, 448).to(F8)
    if amax is not None:
        return ref, scale.reshape(())
    codes = to_quantized_weight(w, scale, QUANTIZATION_FP8_PC_PT if channel else QUANTIZATION_FP8)
    assert torch.equal(codes.view(torch.uint8), ref.view(torch.uint8)), "ModelOpt != torch cast"
    return codes, scale.reshape(-1, 1) if channel else scale.reshape(())


def fp8_midpoints():
    """Every positive e4m3fn value and the midpoint above it, subnormals included."""
    vals = torch.arange(0, 127, dtype=torch.uint8).view(F8).float()  # 0 .. 448
    mids = (vals[:-1] + vals[1:]) / 2
    return torch.cat([vals, mids, torch.tensor([2.0**-10, 2.0**-11, 3 * 2.0**-11])])


def cases(dtype, gen):
    randn = lambda *s: torch.randn(*s, generator=gen)
    tiny = torch.finfo(dtype).smallest_normal
    yield "random", (randn(32, 256) * 0.02).to(dtype), None
    yield "stack", (randn(3, 16, 64) * torch.tensor([0.01, 1.0, 300.0]).view(3, 1, 1)).to(dtype), None
    m = fp8_midpoints()
    mid = torch.cat([m, -m, torch.zeros(512 - 2 * len(m))])[torch.randperm(512, generator=gen)]
    mid = mid.view(4, 128).clone()
    mid[:, 0] = 448.0  # every row's amax is 448: scale 1, so w / scale lands on the midpoints
    yield "midpoints", mid.to(dtype), None
    sub = randn(16, 128) * 2.0**-8  # codes in the e4m3 subnormal range (below 2^-6)
    sub[:, 0] = 448.0
    yield "subnormal_codes", (sub * 3.0).to(dtype), None  # scale 3: non-trivial quotients
    z = randn(8, 64)
    z[2:5] = 0.0
    z[5] = -0.0
    z[6, ::2] = -0.0
    yield "zeros_rows", z.to(dtype), None
    yield "all_zero", torch.zeros(4, 64, dtype=dtype), None
    d = randn(8, 64) * tiny * 2.0**-3  # denormal weights: amax below FLT_MIN for f32
    if dtype == torch.float32:
        d[4:] = torch.where(randn(4, 64) > 0, 1e-44, -1e-44)  # scale would underflow to 0
    yield "denormal", d.to(dtype), None
    o = randn(8, 64)
    o[1, 3] = torch.finfo(dtype).max
    o[5, 9] = -torch.finfo(dtype).max / 3
    yield "outliers", o.to(dtype), None
    g = randn(16, 64).to(dtype)
    yield "given_amax_clamps", g, g.float().abs().amax() / 4  # a quarter of the values clamp
    yield "given_amax_larger", g, g.float().abs().amax() * 3


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    gen = torch.Generator().manual_seed(99)
    tensors, n, clamped = {}, 0, 0
    for dtype in DTYPES:
        for name, w, amax in cases(dtype, gen):
            for channel in (False, True):
                if channel and amax is not None:
                    continue  # moeq takes a given amax per tensor only
                if w.dim() == 3:  # a stack is its experts quantized alone
                    per = [modelopt_fp8(w[e], channel) for e in range(w.shape[0])]
                    codes, scale = torch.stack([c for c, _ in per]), torch.stack([s for _, s in per])
                else:
                    codes, scale = modelopt_fp8(w, channel, amax)
                if amax is not None:
                    clamped += int((codes.float().abs() == 448).sum())
                key = f"c{n:03d}"
                tensors[f"{key}.w"] = w.clone()
                tensors[f"{key}.params"] = torch.tensor([int(channel), int(amax is not None)])
                if amax is not None:
                    tensors[f"{key}.amax"] = amax.reshape(()).float()
                tensors[f"{key}.weight"] = codes.contiguous()
                tensors[f"{key}.weight_scale"] = scale.contiguous()
                n += 1
    assert clamped > 100, clamped
    tensors["num_cases"] = torch.tensor([n])
    save_file(tensors, os.path.join(out_dir, "fp8.safetensors"))
    print(f"oracle_fp8: nvidia-modelopt {modelopt.__version__}, torch {torch.__version__}: {n} cases, "
          f"{clamped} codes clamped to 448 by a given amax")


if __name__ == "__main__":
    main()
