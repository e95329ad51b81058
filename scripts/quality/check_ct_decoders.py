#!/usr/bin/env python3
"""eval_exports.py's compressed-tensors decoders against compressed-tensors' own compress/decompress.

On a random [96, 256] weight: NVFP4PackedCompressor (nvfp4-pack-quantized) and
PackedQuantizationCompressor (pack-quantized W4A16, group 128). compressed-tensors returns the
dequantized weight in the scale's dtype (bf16); eval_exports keeps float32, so the check is
equality after casting to that dtype. Run with the llm-compressor venv (compressed-tensors 0.19).
"""
import os
import sys

import torch
from compressed_tensors.compressors.nvfp4.base import NVFP4PackedCompressor
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.quantization import preset_name_to_scheme

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval_exports as ee  # noqa: E402

torch.manual_seed(0)
W = torch.randn(96, 256) * 0.05
ok = True

sch = preset_name_to_scheme("NVFP4", ["Linear"])
gs = torch.tensor([448.0 * 6 / W.abs().max()])
bs = (W.view(96, 16, 16).abs().amax(-1) / 6 * gs).to(torch.float8_e4m3fn).float()
sd = NVFP4PackedCompressor.compress({"weight": W.clone(), "weight_scale": bs, "weight_global_scale": gs}, sch)
ref = NVFP4PackedCompressor.decompress(dict(sd), sch)["weight"]
mine = ee.dequant_ct_nvfp4({"x." + k: v for k, v in sd.items()}, "x")
eq = torch.equal(mine.to(ref.dtype), ref)
ok &= eq
print(f"nvfp4-pack-quantized: equal to compressed-tensors' decompress ({ref.dtype}): {eq}")

sch = preset_name_to_scheme("W4A16", ["Linear"])
s = (W.view(96, 2, 128).abs().amax(-1) / 7.5).to(torch.bfloat16)
sd = PackedQuantizationCompressor.compress({"weight": W.clone(), "weight_scale": s}, sch)
ref = PackedQuantizationCompressor.decompress(dict(sd), sch)["weight"]
mine = ee.dequant_ct_int4({"x." + k: v for k, v in sd.items()}, "x")
eq = torch.equal(mine.to(ref.dtype), ref)
ok &= eq
print(f"pack-quantized int4 group 128: equal to compressed-tensors' decompress ({ref.dtype}): {eq}")
sys.exit(0 if ok else 1)
