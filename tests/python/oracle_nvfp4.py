"""NVFP4 fixtures from NVIDIA Model Optimizer (the reference), for tests/formats/test_nvfp4.cpp.

Writes <outdir>/nvfp4.safetensors: per case "<NN>_<name>.{input,amax?,weight,weight_scale,
weight_scale_2,deq}" where weight/weight_scale/weight_scale_2 are ModelOpt's
NVFP4QTensor.quantize(w, 16) outputs (per expert for a stack, as moeq quantizes a stack) and
deq is its dequantize() in fp32. A given amax goes through ModelOpt's own
get_weights_scaling_factor_2_from_quantizer (weight_scale_2 = amax / (6 * 448)).

One deliberate deviation (nvfp4.h): where weight_scale_2 would be 0 (all-zero or ultra-tiny
weights) ModelOpt divides 0 by 0 and writes NaN scales; moeq uses weight_scale_2 = 1, and the
reference here is ModelOpt's quantize with that weight_scale_2 passed in.
"""

import sys
import types
from pathlib import Path

import modelopt
import torch
from modelopt.torch.quantization.qtensor.nvfp4_tensor import NVFP4QTensor
from safetensors.torch import save_file

BLOCK = 16


def global_scale(w, amax):
    if amax is None:
        return NVFP4QTensor.get_weights_scaling_factor_2(w)
    quantizer = types.SimpleNamespace(_amax=amax, block_sizes={-1: BLOCK})
    return NVFP4QTensor.get_weights_scaling_factor_2_from_quantizer(quantizer)


def modelopt_2d(w, amax):
    """One matrix through ModelOpt: packed codes, fp8 scales, fp32 global scale, dequantized."""
    s2 = global_scale(w, amax)
    if amax is None and float(s2) != 0.0:
        qt, s, s2 = NVFP4QTensor.quantize(w.clone(), BLOCK)  # ModelOpt's own dynamic path
    else:
        if float(s2) == 0.0:
            s2 = torch.tensor(1.0)  # moeq's deviation (see module docstring)
        qt, s, s2 = NVFP4QTensor.quantize(w.clone(), BLOCK, weights_scaling_factor_2=s2)
    deq = qt.dequantize(dtype=torch.float32, scale=s, double_scale=s2, block_sizes={-1: BLOCK})
    return qt._quantized_data, s, s2.reshape(()).float(), deq


def reference(w, amax):
    if w.dim() == 2:
        return modelopt_2d(w, amax)
    outs = [modelopt_2d(w[e], None if amax is None else amax[e]) for e in range(w.shape[0])]
    q, s, s2, deq = (torch.stack([o[i] for o in outs]) for i in range(4))
    # ModelOpt's export quantizes a stack in one call with weight_scale_2 viewed [E,1,1]: same bytes.
    qt, s_all, _ = NVFP4QTensor.quantize(w.clone(), BLOCK, weights_scaling_factor_2=s2.view(-1, 1, 1))
    assert torch.equal(qt._quantized_data, q) and torch.equal(s_all.view(torch.uint8), s.view(torch.uint8))
    return q, s, s2, deq


def ties(dtype, nudge):
    """Blocks whose scaled values land exactly on every E2M1 rounding midpoint (and, with
    nudge, one float step either side). A 2688 element makes weight_scale_2 exactly 1, a
    block amax of 6 makes its scale exactly 1, of 3 exactly 0.5."""
    mids = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    rows = []
    for sign in (1.0, -1.0):
        for unit in (1.0, 0.5):
            vals = [6.0 * unit] + [m * unit * sign for m in mids.tolist()]
            if nudge:
                vals += [torch.nextafter(torch.tensor(m * unit), torch.tensor(0.0)).item() * sign for m in mids[:4].tolist()]
                vals += [torch.nextafter(torch.tensor(m * unit), torch.tensor(9.0)).item() * sign for m in mids[:4].tolist()]
            rows.append(vals + [0.0] * (BLOCK - len(vals)))
    rows.append([2688.0] + [0.0] * (BLOCK - 1))
    return torch.tensor(rows, dtype=torch.float32).repeat(1, 2).to(dtype)


def cases():
    g = torch.Generator().manual_seed(1234)

    def randn(*shape, scale=1.0, dtype=torch.bfloat16):
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    out = []
    out.append(("gauss_bf16_2d", randn(64, 256, scale=0.02), None))
    out.append(("gauss_f16_2d", randn(48, 128, dtype=torch.float16), None))
    out.append(("gauss_f32_2d", randn(32, 64, scale=3.0, dtype=torch.float32), None))
    stack = randn(4, 32, 128) * torch.tensor([1e-3, 1.0, 50.0, 0.02]).view(-1, 1, 1).to(torch.bfloat16)
    out.append(("stack_bf16_3d", stack, None))
    w = randn(3, 16, 64, dtype=torch.float32)
    out.append(("stack_f32_given_larger", w, w.abs().amax((1, 2)) * torch.tensor([1.0, 2.5, 17.0])))
    w = randn(2, 16, 32)
    out.append(("stack_bf16_given_shared", w, w.float().abs().amax().repeat(2)))  # gate/up sharing one amax
    w = randn(32, 128, scale=0.05)
    out.append(("given_larger_2d", w, w.float().abs().amax() * 8))
    out.append(("given_huge_2d", w, w.float().abs().amax() * 1e4))  # block scales clamp at 2^-9
    out.append(("given_smaller_2d", w, w.float().abs().amax() / 4))  # block scales clamp at 448
    out.append(("given_zero_2d", w, torch.tensor(0.0)))
    out.append(("zeros_bf16", torch.zeros(16, 64, dtype=torch.bfloat16), None))
    out.append(("zeros_f32_given", torch.zeros(4, 32), torch.tensor(1.5)))
    w = randn(8, 64, scale=0.1)
    w[1] = 0
    w[3, 16:32] = 0
    w[5, :16] = -0.0
    out.append(("zero_blocks", w, None))
    out.append(("denormal_f32", randn(8, 64, scale=1e-39, dtype=torch.float32), None))
    out.append(("denormal_bf16", randn(8, 64, scale=1e-38), None))
    out.append(("ultra_tiny_f32", randn(4, 32, scale=1e-43, dtype=torch.float32), None))  # amax/2688 == 0
    w = randn(16, 64, scale=1e-30, dtype=torch.float32)
    w[0, 0] = 1e-20
    out.append(("tiny_normal_f32", w, None))
    out.append(("ties_f32", ties(torch.float32, nudge=False), None))
    out.append(("ties_nudged_f32", ties(torch.float32, nudge=True), None))
    out.append(("ties_bf16", ties(torch.bfloat16, nudge=False), None))
    out.append(("ties_f16", ties(torch.float16, nudge=False), None))
    w = randn(16, 128, scale=1e-3)
    w[3, 77] = 1e4
    w[9, 5] = -3e3
    out.append(("outliers_bf16", w, None))
    w = torch.empty(6, 32)
    for r, v in enumerate([0.3, -0.7, 1e-5, 448.0, -2688.0, 1.0]):
        w[r] = v
    out.append(("equal_blocks_f32", w, None))
    out.append(("equal_blocks_bf16", w.to(torch.bfloat16), None))
    w = torch.full((4, 32), -0.0)
    w[1] = -1e-4
    w[1, 0] = 1.0
    w[2, ::2] = -0.0
    w[2, 1::2] = 0.5
    w[3] = torch.tensor([-0.0, -1e-9, -0.01, -5.0] * 8)
    out.append(("negative_zeros_f32", w, None))
    out.append(("negative_zeros_bf16", w.to(torch.bfloat16), None))
    # Negatives whose quotient underflows to -0.0: ModelOpt's sign is (quotient < 0), so code 0.
    w = torch.zeros(2, 32)
    w[:, 0] = 100.0
    w[:, 1:16] = torch.tensor([-1.4e-45, -1e-44, -3e-39, -1e-30, -0.0] * 3)
    w[1, 16:] = -1.4e-45
    out.append(("negative_underflow_f32", w, None))
    w = randn(8, 64, dtype=torch.float16)
    w[0, :4] = torch.tensor([65504.0, -65504.0, 6e-8, -6e-8])
    w[1] = 6e-8
    out.append(("f16_extremes", w, None))
    w = randn(8, 32, scale=1e37, dtype=torch.float32)
    w[0, 0] = 3.4e38
    out.append(("huge_f32", w, None))
    w = randn(4, 32)
    w[0, 0] = 3.3895e38
    out.append(("bf16_max", w, None))
    out.append(("single_block", randn(1, 16, dtype=torch.float32), None))
    out.append(("stack_f16_odd", randn(5, 3, 48, scale=0.3, dtype=torch.float16), None))
    return out


def main():
    outdir = Path(sys.argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    tensors = {}
    all_cases = cases()
    for i, (name, w, amax) in enumerate(all_cases):
        q, s, s2, deq = reference(w, amax)
        key = f"{i:02d}_{name}"
        tensors[f"{key}.input"] = w.clone().contiguous()
        if amax is not None:
            tensors[f"{key}.amax"] = amax.float().contiguous()
        tensors[f"{key}.weight"] = q.contiguous()
        tensors[f"{key}.weight_scale"] = s.contiguous()
        tensors[f"{key}.weight_scale_2"] = s2.contiguous()
        tensors[f"{key}.deq"] = deq.contiguous()
    save_file(tensors, str(outdir / "nvfp4.safetensors"))
    print(f"oracle_nvfp4: nvidia-modelopt {modelopt.__version__}, torch {torch.__version__}: "
          f"{len(all_cases)} cases -> {outdir / 'nvfp4.safetensors'}")


if __name__ == "__main__":
    main()
