"""Pins bitsandbytes' CPU dequantize_4bit to one code path on every host (import it before
decoding; the oracle and consumer tests do).

bitsandbytes 0.50.2 decodes 4-bit weights on the CPU in one of three ways, chosen by the host:
its C library's AVX-512 kernel when the CPU has AVX-512F (cpuid, not torch's
ATEN_CPU_CAPABILITY), its scalar C kernel otherwise, and its pure-torch "default" kernel for an
odd last dimension or, on AVX-512 hosts, blocks >= 2048. The AVX-512 kernel restarts the blocks
at every row (absmax index `row * (n / blocksize) + col / blocksize`), so any weight whose row
length n is not a multiple of the block size (dq_big: n = 128, block 256) decodes with the
wrong absmax: on an Intel AVX-512 host `dq_big__fp4_256_dq` differed in 112467 bytes (that
indexing applied to the committed CUDA reference on any host gives exactly those 112467 bytes). Its FP4
table also maps code 8 to +0 where the scalar and CUDA kernels give -0 (the consumer test's
`fp4_b128` failure there: "differs in 0 values", signed zeros only).

The pure-torch kernel is the one path every host can take: a table lookup and one float32
multiply per value (then a round-to-nearest cast), which are exact IEEE operations whatever
ISA torch dispatches to, so its output cannot depend on the host. It is bitsandbytes' own code
(backends/default/ops.py), registered here as the CPU kernel in place of the C library's.
"""
import warnings

import torch
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
from bitsandbytes.backends.utils import _get_4bit_code


def _dequantize_4bit_pinned(A, absmax, blocksize, quant_type, shape, dtype):
    if A.dtype != torch.uint8:
        A = A.view(torch.uint8)
    code = _get_4bit_code(quant_type, A.device)
    return _dequantize_4bit_compute(A.reshape(-1), absmax.float(), code, blocksize, shape, dtype)


_lib = torch.library.Library("bitsandbytes", "IMPL")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "Overriding a previously registered kernel": the point
    _lib.impl("dequantize_4bit", _dequantize_4bit_pinned, "CPU", allow_override=True)
