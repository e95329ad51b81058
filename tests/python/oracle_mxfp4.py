"""MXFP4 fixtures from an independent reference written from the OCP Microscaling Formats (MX)
Specification v1.0 (section 6.3, Algorithm 1, with E2M1 elements, E8M0 scale, k = 32), for
tests/formats/test_mxfp4.cpp. No library implements this spec on CPU (ModelOpt 0.47.0's
MXFP4QTensor uses ceil(log2(amax / 6)) and rounds ties down, so it is not a reference).

Writes <outdir>/mxfp4.safetensors: per case "<NN>_<name>.{input,weight,weight_scale,deq}".

The reference works in float64 numpy, by a different route from moeq's C++ (which uses
comparisons against the rounding midpoints): it picks the nearest E2M1 grid point by
distance, breaking ties toward the even mantissa. Where the spec leaves a choice (see
src/formats/mxfp4/mxfp4.h), the reference takes the same documented one:
  all-zero block -> shared_exp -127 (E8M0 0x00); shared_exp clamped to >= -127;
  sign = IEEE sign bit (so -0.0 -> code 8); |x / X| above 6 saturates to 6.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

BLOCK = 32
EMAX_ELEM = 2  # E2M1: largest normal 6 = 1.5 * 2^2
GRID = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def spec_quantize(w):
    """w: torch tensor [..., out, in] -> (packed uint8 [..., out, in/2], scale uint8 [..., out, in/32])."""
    x = w.float().numpy().astype(np.float64)  # exact widening
    blocks = x.reshape(*x.shape[:-1], -1, BLOCK)
    amax = np.abs(blocks).max(axis=-1)
    # floor(log2(amax)) exactly: amax = m * 2^e with m in [0.5, 1).
    _, e = np.frexp(amax)
    shared = np.where(amax == 0, -127, e - 1 - EMAX_ELEM)
    shared = np.clip(shared, -127, 127)
    v = np.ldexp(blocks, -shared[..., None])  # V_i / X, exact in float64
    a = np.minimum(np.abs(v), 6.0)  # saturate ("clamping normal numbers")
    dist = np.abs(a[..., None] - GRID)
    best = dist.min(axis=-1, keepdims=True)
    tie_ok = dist == best
    # ties (two nearest points) go to the even index = mantissa bit 0
    even = tie_ok & (np.arange(8) % 2 == 0)
    idx = np.where(tie_ok.sum(-1) > 1, even.argmax(-1), tie_ok.argmax(-1))
    codes = (idx | (np.signbit(v).astype(np.int64) << 3)).astype(np.uint8)
    codes = codes.reshape(x.shape)
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return torch.from_numpy(packed.astype(np.uint8)), torch.from_numpy((shared + 127).astype(np.uint8))


def spec_dequantize(packed, scale):
    p = packed.numpy()
    codes = np.stack([p & 15, p >> 4], axis=-1).reshape(*p.shape[:-1], -1)
    vals = GRID[codes & 7] * np.where(codes & 8, -1.0, 1.0)
    s = np.ldexp(1.0, scale.numpy().astype(np.int64) - 127)
    out = vals.reshape(*vals.shape[:-1], -1, BLOCK) * s[..., None]
    return torch.from_numpy(out.reshape(vals.shape).astype(np.float32))


def ties(dtype):
    """Blocks with amax 4 (X = 1) and 2 (X = 0.5) holding every E2M1 midpoint, its
    neighbours one float step away (f32), and values in (6, 8) * X that saturate."""
    mids = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
    rows = []
    for unit in (1.0, 0.5):
        for sign in (1.0, -1.0):
            vals = [4.0 * unit] + [m * unit * sign for m in mids]
            vals += [np.nextafter(np.float32(m * unit), np.float32(0)) * sign for m in mids]
            vals += [np.nextafter(np.float32(m * unit), np.float32(9)) * sign for m in mids]
            vals += [7.9 * unit * sign, 6.5 * unit, 5.5 * unit * sign, 0.125 * unit]
            rows.append(vals + [0.0] * (BLOCK - len(vals)))
    return torch.tensor(np.array(rows, dtype=np.float32)).to(dtype)


def cases():
    g = torch.Generator().manual_seed(4321)

    def randn(*shape, scale=1.0, dtype=torch.bfloat16):
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    out = []
    out.append(("gauss_bf16_2d", randn(64, 256, scale=0.02)))
    out.append(("gauss_f16_2d", randn(32, 128, dtype=torch.float16)))
    out.append(("gauss_f32_2d", randn(16, 64, scale=5.0, dtype=torch.float32)))
    out.append(("stack_bf16_3d", randn(4, 16, 128) * torch.tensor([1e-3, 1.0, 300.0, 0.02]).view(-1, 1, 1).to(torch.bfloat16)))
    out.append(("stack_f16_odd", randn(3, 5, 96, scale=0.1, dtype=torch.float16)))
    out.append(("zeros_bf16", torch.zeros(8, 64, dtype=torch.bfloat16)))
    w = randn(8, 64, scale=0.1, dtype=torch.float32)
    w[2] = 0
    w[4, 32:] = -0.0
    out.append(("zero_blocks_f32", w))
    out.append(("denormal_f32", randn(8, 64, scale=1e-40, dtype=torch.float32)))  # shared_exp clamps at -127
    out.append(("denormal_bf16", randn(8, 64, scale=1e-39)))
    w = randn(4, 64, scale=1e-37, dtype=torch.float32)
    w[:, ::5] = 1.4e-45
    out.append(("tiny_mixed_f32", w))
    out.append(("ties_f32", ties(torch.float32)))
    out.append(("ties_bf16", ties(torch.bfloat16)))
    out.append(("ties_f16", ties(torch.float16)))
    # block amax just below / at powers of two: a float log2 would round floor() up here
    w = torch.zeros(6, 32)
    for r, top in enumerate([2.0**20, 2.0**-3, 1.0, 2.0**100, 2.0**-120, 3.0]):
        below = np.nextafter(np.float32(top), np.float32(0))
        w[r, 0] = float(below) if r % 2 == 0 else top
        w[r, 1:] = torch.linspace(-float(below), float(below), 31)
    out.append(("pow2_edges_f32", w))
    w = randn(16, 128, scale=1e-3)
    w[3, 77] = 1e4
    w[9, 5] = -3e3
    out.append(("outliers_bf16", w))
    w = torch.empty(6, 64)
    for r, v in enumerate([0.3, -0.7, 1e-5, 6.0, -2688.0, 1.0]):
        w[r] = v
    out.append(("equal_blocks_f32", w))
    out.append(("equal_blocks_bf16", w.to(torch.bfloat16)))
    w = torch.full((3, 32), -0.0)
    w[1] = torch.tensor([-0.0, -1e-9, -0.01, -5.0] * 8)
    w[2, ::2] = 1.0
    out.append(("negative_zeros_f32", w))
    out.append(("negative_zeros_bf16", w.to(torch.bfloat16)))
    w = randn(4, 64, dtype=torch.float16)
    w[0, :4] = torch.tensor([65504.0, -65504.0, 6e-8, -6e-8])
    w[1] = 6e-8
    out.append(("f16_extremes", w))
    w = randn(4, 32, scale=1e37, dtype=torch.float32)
    w[0, 0] = 3.4028234e38
    out.append(("f32_max", w))
    w = randn(4, 32)
    w[0, 0] = 3.3895e38
    out.append(("bf16_max", w))
    return out


def main():
    outdir = Path(sys.argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    tensors = {}
    all_cases = cases()
    for i, (name, w) in enumerate(all_cases):
        q, s = spec_quantize(w)
        key = f"{i:02d}_{name}"
        tensors[f"{key}.input"] = w.clone().contiguous()
        tensors[f"{key}.weight"] = q.contiguous()
        tensors[f"{key}.weight_scale"] = s.contiguous()
        tensors[f"{key}.deq"] = spec_dequantize(q, s).contiguous()
    save_file(tensors, str(outdir / "mxfp4.safetensors"))
    print(f"oracle_mxfp4: spec-derived reference (OCP MX v1.0 sec. 6.3), numpy {np.__version__}, "
          f"torch {torch.__version__}: {len(all_cases)} cases -> {outdir / 'mxfp4.safetensors'}")


if __name__ == "__main__":
    main()
