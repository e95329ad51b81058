"""bitsandbytes' CPU 4-bit paths that depend on the host, and the one moeq_loader uses instead.

bitsandbytes 0.50.2 on the CPU picks its code by cpuid:
- dequantize_4bit: on AVX-512F hosts its C library's AVX-512 kernel restarts the absmax blocks
  at every row (absmax index `row * (n / blocksize) + col / blocksize`), so a weight whose row
  length is not a multiple of the block size decodes with the wrong absmax (seen on an Intel
  Xeon: every expert of the tiny Qwen3-MoE decoded differently from moeq's dequantization);
- Linear4bit.forward: on AVX512-BF16 hosts it repacks the weight for its CPU gemm, which
  asserts `N must be divisible by block_n` on small output widths and reads a nested
  `state2` that a non-nested QuantState does not have.
Its pure-torch "default" kernel (a table lookup and one float32 multiply per value) gives the
same bytes on every host (with FP4 code 8 decoded as -0, as its scalar and CUDA kernels do). pin_portable_cpu_kernels() registers it as the CPU dequantize_4bit and
turns off the AVX512-BF16 repacking of every Linear4bit, so that a loaded model gives the same
logits on every CPU; it returns a note when the host would otherwise have taken one of those
paths, which load_bnb_export prints (no silent fallback).
"""
import warnings

import torch
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
from bitsandbytes.backends.utils import _get_4bit_code

_library = None


_codes = {}


def _code(quant_type, device):
    """bitsandbytes' 4-bit table; FP4 code 8 as -0, as its scalar CPU and CUDA kernels decode it
    (its torch table holds +0 there)."""
    key = (quant_type, device)
    if key not in _codes:
        code = _get_4bit_code(quant_type, device).clone()
        if quant_type == "fp4":
            code[8] = -0.0
        _codes[key] = code
    return _codes[key]


def _dequantize_4bit_portable(A, absmax, blocksize, quant_type, shape, dtype):
    if A.dtype != torch.uint8:
        A = A.view(torch.uint8)
    code = _code(quant_type, A.device)
    return _dequantize_4bit_compute(A.reshape(-1), absmax.float(), code, blocksize, shape, dtype)


def _host_paths():
    """The host-dependent bitsandbytes CPU paths this machine would take."""
    from bitsandbytes.functional import has_avx512bf16
    paths = []
    if torch.backends.cpu.get_cpu_capability() == "AVX512" or "avx512f" in _cpu_flags():
        paths.append("AVX-512 dequantize_4bit")
    if has_avx512bf16():
        paths.append("AVX512-BF16 Linear4bit repacking")
    return paths


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def pin_portable_cpu_kernels(model):
    """Routes the model's CPU 4-bit work through bitsandbytes' portable kernel (see above).
    Returns a one-line note naming what changed on this host, or None where nothing did."""
    global _library
    if _library is None:
        _library = torch.library.Library("bitsandbytes", "IMPL")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Overriding a previously registered kernel": the point
            _library.impl("dequantize_4bit", _dequantize_4bit_portable, "CPU", allow_override=True)
    repacking = 0
    for m in model.modules():
        if getattr(m, "support_avx512bf16_for_cpu", False):
            m.support_avx512bf16_for_cpu = False
            repacking += 1
    paths = _host_paths()
    if not paths:
        return None
    return (f"moeq_loader: this CPU would take bitsandbytes' host-dependent {' and '.join(paths)} "
            f"(wrong results on some shapes); using its portable torch kernel for dequantize_4bit instead"
            + (f", and the dequantize + matmul path for {repacking} Linear4bit modules" if repacking else ""))
