"""Oracle fixtures for the int4/int8 formats: compressed-tensors' own outputs.

llm-compressor's W4A16 / W8A16 (group 128) path, replayed with compressed-tensors:
per-group min/max of the weight in its own dtype (the memoryless min-max observer),
calculate_qparams (scales in the weight dtype, int8 zero points), then the
pack-quantized compressor (weight_packed int32, zero points packed along the output
dim). Writes <out>/intq.safetensors: per case c<NNN>.{w, params=[bits, symmetric, group],
weight_packed, weight_scale, weight_zero_point (asymmetric), weight_shape, dequant}.
Usage: oracle_intq.py OUT_DIR
"""
import os
import sys

import compressed_tensors
import torch
from compressed_tensors.compressors.pack_quantized import PackedQuantizationCompressor
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
from compressed_tensors.quantization.utils import calculate_qparams
from safetensors.torch import save_file

DTYPES = [torch.bfloat16, torch.float16, torch.float32]


def ct_compress(w, bits, sym, group):
    args = QuantizationArgs(num_bits=bits, type="int", symmetric=sym, strategy="group", group_size=group)
    scheme = QuantizationScheme(targets=["Linear"], weights=args)
    g = w.unflatten(-1, (-1, group))
    scale, zp = calculate_qparams(g.amin(-1), g.amax(-1), args)
    sd = {"weight": w, "weight_scale": scale}
    if not sym:
        sd["weight_zero_point"] = zp
    out = PackedQuantizationCompressor.compress(sd, scheme)
    deq = PackedQuantizationCompressor.decompress(dict(out), scheme)["weight"]
    return out, deq, scale


def exact(values, dtype):
    """The values that `dtype` represents exactly."""
    t = torch.tensor(values, dtype=torch.float64)
    return [v for v, c in zip(values, t.to(dtype).double().tolist()) if c == v]


def tie_rows(bits, sym, dtype, group, rows, gen):
    """Rows whose groups have scale 1 or 0.5 (exact), so x/scale lands on k + 0.5."""
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    out = []
    for r in range(rows):
        unit = 1.0 if r % 2 == 0 else 0.5
        if sym:
            lo, hi = -(qmax + 0.5) * unit, (qmax + 0.5) * unit  # amax / (range/2) = unit
        else:
            shift = [0, qmax // 2, -qmin // 2][r % 3]  # zero point 0 or nonzero
            lo, hi = (qmin + shift) * unit, (qmax + shift) * unit  # (hi - lo) / range = unit
            if lo > 0 or hi < 0:
                lo, hi = qmin * unit, qmax * unit
        ties = exact([(k + 0.5) * unit for k in range(int(lo / unit) - 1, int(hi / unit) + 1)
                      if lo <= (k + 0.5) * unit <= hi], dtype)
        pick = torch.randint(0, len(ties), (group - 2,), generator=gen)
        out.append([lo, hi] + [ties[i] for i in pick.tolist()])
    return torch.tensor(out, dtype=torch.float64).to(dtype)


def cases(bits, sym, dtype, gen):
    """(name, weight, group) for one format variant and input dtype. Every case has more
    than 8 rows: compressed-tensors 0.20.0 cannot decompress int4 zero points packed into
    a single row of words (its unpack views a transposed [ng, 1] tensor as bytes)."""
    fmax = torch.finfo(dtype).max
    tiny = torch.finfo(dtype).smallest_normal
    randn = lambda *s: torch.randn(*s, generator=gen)
    g = 128
    yield "random", (randn(22, 256) * 0.02).to(dtype), g
    yield "stack", (randn(3, 22, 128) * 0.05).to(dtype), 32
    yield "small_group", randn(9, 64).to(dtype), 32 // bits
    yield "zeros", torch.zeros(10, 256, dtype=dtype), g
    nz = torch.zeros(10, 128)
    nz[0] = -0.0
    nz[1, ::2] = -0.0
    nz[2] = randn(128) * 1e-3
    nz[2, ::3] = -0.0
    yield "negzero", nz.to(dtype), 64
    # denormals of the dtype and values whose scale underflows to 0 (replaced by eps)
    den = torch.empty(10, 128)
    den[0:2] = randn(2, 128) * tiny * 0.3
    den[2] = torch.full((128,), tiny * 2.0**-8)
    den[3] = -torch.full((128,), tiny * 2.0**-8)
    den[4:6] = randn(2, 128) * tiny * 4
    den[8:] = randn(2, 128) * tiny * 2.0**-4
    den[6] = torch.where(randn(128) > 0, tiny * 2.0**-9, 0.0)  # tiny positive group
    den[7] = torch.where(randn(128) > 0, -tiny * 2.0**-9, 0.0)  # tiny negative group
    if dtype == torch.float32:
        den[6:8] = den[6:8].sign() * 1.4e-45  # smallest f32 denormal: amax/7.5 -> 0
    yield "tiny", den.to(dtype), 64
    yield "ties", tie_rows(bits, sym, dtype, 64, 12, gen), 64
    out = randn(10, 256)
    out[:, 5] = 100.0
    out[1, 77] = -3000.0
    out[2, 200] = fmax / 4 if dtype == torch.float16 else 1e4  # keeps max - min finite in f16
    out[3, 130] = 60000.0 if dtype == torch.float16 else 1e30
    out[4] = 0.0
    out[4, 17] = -20.0
    yield "outliers", out.to(dtype), g
    eq = torch.empty(10, 128)
    for r, c in enumerate([1.0, -1.0, 3.0, -7.25, 1e-3, -1e-3, 0.1, 448.0, 0.0, -65.0]):
        eq[r] = c
    yield "equal", eq.to(dtype), 64
    one = randn(10, 128).abs() + 0.5
    one[5:] = -one[5:]
    yield "onesided", one.to(dtype), 64


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    gen = torch.Generator().manual_seed(1234)
    tensors, n, ties = {}, 0, 0
    for bits in (4, 8):
        for sym in (True, False):
            for dtype in DTYPES:
                for name, w, group in cases(bits, sym, dtype, gen):
                    parts, deq, scale = ct_compress(w, bits, sym, group)
                    key = f"c{n:03d}"
                    if w.dim() == 3:  # a stack is its experts quantized one by one
                        for e in range(w.shape[0]):
                            pe, de, _ = ct_compress(w[e].contiguous(), bits, sym, group)
                            for k, v in pe.items():
                                if k != "weight_shape":
                                    assert torch.equal(parts[k][e], v), (key, k)
                        parts["weight_shape"] = torch.tensor([list(w.shape[1:])] * w.shape[0])
                    if name == "ties":
                        q = (w.unflatten(-1, (-1, group)) / scale.unsqueeze(-1)).float()
                        ties += int(((q - q.floor()) == 0.5).sum())
                    tensors[f"{key}.w"] = w.contiguous()
                    tensors[f"{key}.params"] = torch.tensor([bits, int(sym), group])
                    tensors[f"{key}.dequant"] = deq.contiguous()
                    for k, v in parts.items():
                        tensors[f"{key}.{k}"] = v.contiguous()
                    n += 1
    assert ties > 1000, ties  # the tie cases must really hold ties
    tensors["num_cases"] = torch.tensor([n])
    save_file(tensors, os.path.join(out_dir, "intq.safetensors"))
    print(f"oracle_intq: compressed-tensors {compressed_tensors.__version__}, torch {torch.__version__}: "
          f"{n} cases, {ties} ties at .5")


if __name__ == "__main__":
    main()
