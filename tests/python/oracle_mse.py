"""MSE weight-calibration fixtures from NVIDIA Model Optimizer 0.47 (the reference), on CPU,
for tests/quant/test_mse_search.cpp.

The search is ModelOpt's own calibrator classes (modelopt/torch/quantization/calib/mse.py):
MseCalibrator (amax x linspace(start, stop, ceil((stop - start) / step) + 1), first least
error) and NVFP4MSECalibrator (the 126 FP8 E4M3 scale candidates of
kernels/quantization/gemm/_fp8_scale_candidates.py; on CPU it runs its reference sweep).
The chosen amax then goes through ModelOpt's export functions (get_scaling_factor /
to_quantized_weight for FP8, NVFP4QTensor.get_weights_scaling_factor_from_quantizer and
NVFP4QTensor.quantize for static NVFP4).

The quantization function each candidate is measured with:
  FP8: ModelOpt's own TensorQuantizer fake quant (scaled_e4m3 -> fp8_eager on CPU), through
       model_calib._mse_quant_func, exactly as mse_calibrate wires it.
  NVFP4: ModelOpt's static block fake quant is a Triton kernel (CUDA only). Its block scale
       comes from ModelOpt's compute_fp4_scales (runs on CPU); the element rounding of its
       nvfp4_scalar_quant (Triton) is transcribed below in torch ops (fake_quant_nvfp4).
Each expert of a stack is its own tensor (ModelOpt gives fused experts one quantizer each);
an FP8 gate/up pair is searched as one tensor (the two stacked along rows, initial amax the
larger of the two): the joint search moeq runs for a pair that shares one scale.

Writes <out>/mse.safetensors, per case "<key>.*": input (and input2: the up half of a
pair), kind = [format 0 fp8 / 1 nvfp4, channel, fp8_scale_sweep, pair], mult = [start, stop,
step] (float64), global_amax (nvfp4, [E]: the shared global amax it was searched under),
amax (the chosen amax: fp8 [E] or [E, out]; nvfp4 per-block [E, out, in/16]), weight,
weight_scale, weight_scale_2 (ModelOpt's export of the chosen amax).
Usage: oracle_mse.py OUT_DIR
"""
import math
import os
import sys
import types
import warnings
from functools import partial

import torch
from safetensors.torch import save_file

warnings.filterwarnings("ignore")
import modelopt  # noqa: E402
from modelopt.torch.export.model_config import QUANTIZATION_FP8, QUANTIZATION_FP8_PC_PT  # noqa: E402
from modelopt.torch.export.quant_utils import get_scaling_factor, to_quantized_weight  # noqa: E402
from modelopt.torch.kernels.quantization.gemm.fp4_kernel import compute_fp4_scales  # noqa: E402
from modelopt.torch.quantization.calib.mse import MseCalibrator, NVFP4MSECalibrator  # noqa: E402
from modelopt.torch.quantization.config import QuantizerAttributeConfig  # noqa: E402
from modelopt.torch.quantization.model_calib import _mse_quant_func  # noqa: E402
from modelopt.torch.quantization.nn import TensorQuantizer  # noqa: E402
from modelopt.torch.quantization.qtensor.nvfp4_tensor import NVFP4QTensor  # noqa: E402

BLOCK = 16
DEFAULT = (0.25, 4.0, 0.1)  # ModelOpt's MseCalibConfig defaults: 39 multipliers


# ---- FP8 ------------------------------------------------------------------------------------
def fp8_search(w2d, channel, mult):
    """ModelOpt's MseCalibrator on one 2D weight; returns (chosen amax, codes, scale)."""
    q = TensorQuantizer(QuantizerAttributeConfig(num_bits=(4, 3), axis=0 if channel else None))
    x = w2d.float()
    q.amax = x.abs().amax(1, keepdim=True) if channel else x.abs().amax()  # max calibration
    start, stop, step = mult
    cal = MseCalibrator(amax=q.amax.clone(), axis=0 if channel else None, step_size=step, start_multiplier=start,
                        stop_multiplier=stop, quant_func=partial(_mse_quant_func, quantizer=q))
    cal.collect(x)
    amax = cal.compute_amax()
    q.amax = amax
    scale = get_scaling_factor(q)
    codes = to_quantized_weight(w2d, scale, QUANTIZATION_FP8_PC_PT if channel else QUANTIZATION_FP8)
    return amax.reshape(-1) if channel else amax.reshape(()), codes, scale.reshape(-1, 1) if channel else scale.reshape(())


def fp8_case(w, channel, mult, up=None):
    """Per expert of a stack; a pair (up given) as one tensor [gate; up] per expert."""
    w3 = w if w.dim() == 3 else w.unsqueeze(0)
    u3 = None if up is None else (up if up.dim() == 3 else up.unsqueeze(0))
    amax, codes, scales, codes2 = [], [], [], []
    for e in range(w3.shape[0]):
        joint = w3[e] if u3 is None else torch.cat([w3[e], u3[e]])
        a, c, s = fp8_search(joint, channel, mult)
        amax.append(a)
        codes.append(c[: w3.shape[1]])
        codes2.append(c[w3.shape[1]:])
        scales.append(s)
    out = {"amax": torch.stack(amax), "weight": torch.stack(codes), "weight_scale": torch.stack(scales)}
    if up is not None:
        out["weight2"] = torch.stack(codes2)
    if w.dim() == 2:
        out = {k: v[0] for k, v in out.items()}
    return out


# ---- NVFP4 ----------------------------------------------------------------------------------
def fp4_round_magnitude(a):
    """nvfp4_quant.py fp4_round_magnitude (Triton), in torch ops."""
    out = torch.full_like(a, 6.0)
    for bound, value, inclusive in [(5.0, 4.0, True), (3.5, 3.0, False), (2.5, 2.0, True), (1.75, 1.5, False),
                                    (1.25, 1.0, True), (0.75, 0.5, False), (0.25, 0.0, True)]:
        out = torch.where(a <= bound if inclusive else a < bound, value, out)
    return out


def fake_quant_nvfp4(x, amax, global_amax):
    """ModelOpt's static_blockwise_fp4_fake_quant on blocks x [n, 16] with per-block amax [n]:
    compute_fp4_scales (ModelOpt, CPU) then nvfp4_scalar_quant (Triton, transcribed)."""
    scale = compute_fp4_scales(amax.reshape(-1), global_amax, True).reshape(-1, 1).float()
    zero = scale == 0.0
    safe = torch.where(zero | scale.isnan() | scale.isinf(), torch.ones_like(scale), scale)
    q = fp4_round_magnitude(x.abs() / safe) * safe
    return torch.where(zero, 0.0, torch.where(x >= 0, q, -q))


def nvfp4_search(w2d, global_amax, sweep, mult):
    """One 2D weight: ModelOpt's search per block, then its static export of the chosen amax."""
    x = w2d.float().reshape(-1, BLOCK)  # the static quantizer's blocked layout
    block_amax = x.abs().amax(-1)       # max calibration's per-block amax
    ga = global_amax.float().reshape(())
    fq = partial(fake_quant_nvfp4, global_amax=ga)
    if sweep:
        cal = NVFP4MSECalibrator(amax=block_amax, global_amax=ga, axis=0, quant_func=fq)
    else:
        start, stop, step = mult
        cal = MseCalibrator(amax=block_amax, axis=0, step_size=step, start_multiplier=start, stop_multiplier=stop,
                            quant_func=fq)
    cal.collect(x)
    amax = cal.compute_amax().float()
    quantizer = types.SimpleNamespace(global_amax=ga, _amax=amax, block_sizes={-1: BLOCK})
    s2 = NVFP4QTensor.get_weights_scaling_factor_2_from_quantizer(quantizer)
    s, _ = NVFP4QTensor.get_weights_scaling_factor_from_quantizer(quantizer, w2d, s2)
    qt, s, s2 = NVFP4QTensor.quantize(w2d.clone(), BLOCK, s, s2)
    return amax.reshape(w2d.shape[0], -1), qt._quantized_data, s, s2.reshape(()).float()


def nvfp4_case(w, global_amax, sweep, mult):
    w3 = w if w.dim() == 3 else w.unsqueeze(0)
    ga = global_amax.reshape(-1)
    outs = [nvfp4_search(w3[e], ga[e], sweep, mult) for e in range(w3.shape[0])]
    out = {k: torch.stack([o[i] for o in outs]) for i, k in enumerate(["amax", "weight", "weight_scale", "weight_scale_2"])}
    if w.dim() == 2:
        out = {k: v[0] for k, v in out.items()}
    return out


# ---- cases ----------------------------------------------------------------------------------
def student_t(gen, *shape):
    z = torch.randn(*shape, generator=gen)
    chi2 = sum(torch.randn(*shape, generator=gen) ** 2 for _ in range(3))
    return z / (chi2 / 3).sqrt()


def cases(gen):
    randn = lambda *s: torch.randn(*s, generator=gen)
    bf = torch.bfloat16
    # FP8 (format 0): per tensor, per channel, pairs, custom multipliers.
    yield "fp8_tensor_gauss_bf16", 0, False, False, (randn(64, 256) * 0.02).to(bf), None, DEFAULT
    yield "fp8_tensor_studentt_stack_f32", 0, False, False, student_t(gen, 3, 32, 128), None, DEFAULT
    yield "fp8_tensor_outliers_f16", 0, False, False, (randn(32, 128) * torch.where(randn(32, 128) > 2.5, 30.0, 1.0)).half(), None, DEFAULT
    yield "fp8_channel_studentt_bf16", 0, True, False, student_t(gen, 48, 128).to(bf), None, DEFAULT
    yield "fp8_channel_stack_f32", 0, True, False, student_t(gen, 2, 16, 64) * 0.01, None, DEFAULT
    g, u = student_t(gen, 2, 16, 64).to(bf), (randn(2, 16, 64) * 3).to(bf)
    yield "fp8_tensor_pair_bf16", 0, False, False, g, u, DEFAULT
    yield "fp8_tensor_custom_mult", 0, False, False, student_t(gen, 2, 32, 64), None, (0.5, 1.5, 0.05)
    # NVFP4 (format 1): the 126-value sweep and the multiplier search, per block.
    yield "nvfp4_sweep_gauss_bf16", 1, False, True, (randn(32, 256) * 0.02).to(bf), None, DEFAULT
    z = student_t(gen, 3, 16, 128)
    z[1, 2, 16:32] = 0.0  # a zero block inside a non-zero expert
    yield "nvfp4_sweep_studentt_stack_f32", 1, False, True, z, None, DEFAULT
    yield "nvfp4_sweep_shared_global_f16", 1, False, True, (randn(2, 16, 64)).half(), torch.tensor([9.0, 5.5]), DEFAULT
    yield "nvfp4_sweep_heavy_tail", 1, False, True, student_t(gen, 64, 128) * torch.where(randn(64, 128) > 2.8, 8.0, 1.0), None, DEFAULT
    yield "nvfp4_mult_studentt_bf16", 1, False, False, student_t(gen, 32, 128).to(bf), None, DEFAULT
    m = randn(2, 16, 64)
    m[0, 3, :16] = 0.0
    yield "nvfp4_mult_custom", 1, False, False, m, None, (0.5, 2.0, 0.125)


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    gen = torch.Generator().manual_seed(2024)
    tensors, n = {}, 0
    for name, fmt, channel, sweep, w, extra, mult in cases(gen):
        key = f"{n:02d}_{name}"
        pair = fmt == 0 and extra is not None
        if fmt == 0:
            out = fp8_case(w, channel, mult, up=extra)
        else:
            w3 = w if w.dim() == 3 else w.unsqueeze(0)
            ga = extra if extra is not None else w3.float().abs().amax((1, 2))
            out = nvfp4_case(w, ga, sweep, mult)
            tensors[f"{key}.global_amax"] = ga.float().reshape(-1).contiguous()
        tensors[f"{key}.input"] = w.contiguous()
        if pair:
            tensors[f"{key}.input2"] = extra.contiguous()
        tensors[f"{key}.kind"] = torch.tensor([fmt, int(channel), int(sweep), int(pair)])
        tensors[f"{key}.mult"] = torch.tensor(mult, dtype=torch.float64)
        for k, v in out.items():
            tensors[f"{key}.{k}"] = v.contiguous()
        n += 1
    # The candidate count moeq derives must match ModelOpt's for every case.
    for _, _, _, _, _, _, (start, stop, step) in cases(torch.Generator().manual_seed(0)):
        assert math.ceil((stop - start) / step) + 1 == MseCalibrator(torch.tensor(1.0), None, step, start, stop)._num_steps
    save_file(tensors, os.path.join(out_dir, "mse.safetensors"))
    print(f"oracle_mse: nvidia-modelopt {modelopt.__version__}, torch {torch.__version__}: {n} cases")


if __name__ == "__main__":
    main()
