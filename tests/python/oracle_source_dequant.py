#!/usr/bin/env python3
"""Oracle for decoding quantized sources: transformers 5.17's own dequantization, on the CPU.

Writes OUT/published_quantized/<layout>/ (make_published_quantized.py) and
OUT/source_dequant/<layout>.safetensors: for every FP8-block weight `X.weight` the bf16 tensor
transformers' Fp8Dequantize._dequantize_one(weight, weight_scale_inv, bfloat16) returns (the
path from_pretrained takes on a CPU, where quantizer_finegrained_fp8 sets dequantize=True);
for every MXFP4 pair `X_blocks` / `X_scales` the tensor `X` that convert_moe_packed_tensors
returns ([E, in, out], bf16, as the gpt-oss module holds it).

Partial 128-blocks: _dequantize_one derives the block from rows // scale_rows and raises (or,
where the division happens to be exact, uses a wrong block) when a dimension is not a multiple
of the block. For those weights the oracle pads codes to whole blocks (zeros), calls the same
transformers function and crops: the same per-element math, which DeepSeek's own weight_dequant
kernel applies with masks. source_dequant.json lists which weights went through the pad.
"""
import json
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers.integrations.finegrained_fp8 import Fp8Dequantize
from transformers.integrations.mxfp4 import convert_moe_packed_tensors

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_published_quantized  # noqa: E402

BLOCK = 128


def load_all(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(d, f), "pt") as h:
                for k in h.keys():
                    out[k] = h.get_tensor(k)
    return out


def fp8_oracle(q, s, padded):
    deq = Fp8Dequantize(None)
    rows, cols = q.shape
    if rows % BLOCK == 0 and cols % BLOCK == 0:
        return deq._dequantize_one(q, s, output_dtype=torch.bfloat16)
    padded.append(True)
    sr, sc = s.shape
    qp = torch.zeros(sr * BLOCK, sc * BLOCK, dtype=torch.float8_e4m3fn)
    qp[:rows, :cols] = q
    return deq._dequantize_one(qp, s, output_dtype=torch.bfloat16)[:rows, :cols].contiguous()


def main():
    out = sys.argv[1]
    src = os.path.join(out, "published_quantized")
    make_published_quantized.main_args([src])
    os.makedirs(os.path.join(out, "source_dequant"), exist_ok=True)
    summary = {}
    for layout in make_published_quantized.LAYOUTS:
        tensors = load_all(os.path.join(src, layout))
        expected, padded_names = {}, []
        for name, t in tensors.items():
            if name.endswith(".weight_scale_inv"):
                w = name[: -len("_scale_inv")]
                padded = []
                expected[w] = fp8_oracle(tensors[w], t, padded)
                if padded:
                    padded_names.append(w)
            elif name.endswith("_blocks"):
                base = name[: -len("_blocks")]
                expected[base] = convert_moe_packed_tensors(t, tensors[base + "_scales"]).contiguous()
        save_file(expected, os.path.join(out, "source_dequant", layout + ".safetensors"))
        summary[layout] = {"weights": len(expected), "partial_block_weights_padded": sorted(padded_names)}
        print(f"{layout}: {len(expected)} decoded weights ({len(padded_names)} with partial blocks)")
    # Every code and the ends of the scale ranges, outside any layout: FP8 codes 0..255 but the
    # two NaNs, under F32 and BF16 scales from tiny to large; MXFP4 every byte under every E8M0
    # exponent 0..254 (0xFF is NaN and rejected).
    g = torch.Generator().manual_seed(1)
    codes = torch.tensor([c for c in range(256) if c not in (0x7F, 0xFF)], dtype=torch.uint8)
    q = codes[torch.randint(0, len(codes), (256, 384), generator=g)].view(torch.float8_e4m3fn)
    s32 = torch.tensor([[1e-30, 3.7e-3, 1.0], [0.017, 2.5e5, 1e30]], dtype=torch.float32)
    blocks = torch.randint(0, 256, (255, 4, 16), dtype=torch.uint8, generator=g)
    scales = torch.arange(255, dtype=torch.uint8).view(255, 1).repeat(1, 4)
    edge = {"fp8_codes": q.view(torch.uint8), "fp8_scale_f32": s32, "fp8_scale_bf16": s32.to(torch.bfloat16),
            "fp8_deq_f32": Fp8Dequantize(None)._dequantize_one(q, s32, output_dtype=torch.bfloat16),
            "fp8_deq_bf16": Fp8Dequantize(None)._dequantize_one(q, s32.to(torch.bfloat16), output_dtype=torch.bfloat16),
            "mxfp4_blocks": blocks, "mxfp4_scales": scales,
            # convert_moe_packed_tensors wants [E, rows, G, 16]; its output is [E, in, rows]
            "mxfp4_deq": convert_moe_packed_tensors(blocks[None], scales[None])[0].t().contiguous()}
    save_file(edge, os.path.join(out, "source_dequant", "edges.safetensors"))
    with open(os.path.join(out, "source_dequant", "source_dequant.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
