"""Oracle fixtures for static activation (input) scales from a calibration amax.

ModelOpt's export functions on a TensorQuantizer holding the amax:
  NVFP4 (num_bits (2,1), dynamic per-block FP8 scales): NVFP4QTensor.get_activation_scaling_factor
  FP8 (num_bits (4,3), per tensor): quant_utils.get_scaling_factor
and compressed-tensors' own math for its layout:
  NVFP4 input_global_scale: generate_gparam(-amax, amax)
  FP8 input_scale: calculate_qparams(-amax, amax, float8 per-tensor args)
Writes <out>/input_scale.safetensors: amax [N], modelopt_nvfp4 [N], modelopt_fp8 [N],
ct_nvfp4_global [N], ct_fp8 [N] (float32). Usage: oracle_input_scale.py OUT_DIR
"""
import os
import sys
import warnings

import torch
from safetensors.torch import save_file

warnings.filterwarnings("ignore")
from compressed_tensors.quantization import QuantizationArgs  # noqa: E402
from compressed_tensors.quantization.utils.helpers import calculate_qparams, generate_gparam  # noqa: E402
from modelopt.torch.export.quant_utils import get_scaling_factor  # noqa: E402
from modelopt.torch.quantization.config import QuantizerAttributeConfig  # noqa: E402
from modelopt.torch.quantization.nn import TensorQuantizer  # noqa: E402
from modelopt.torch.quantization.qtensor import NVFP4QTensor  # noqa: E402


def amax_values():
    gen = torch.Generator().manual_seed(7)
    log_uniform = torch.exp(torch.empty(400).uniform_(-14, 10, generator=gen))  # ~1e-6 .. 2e4
    bf16 = torch.randn(100, generator=gen).abs().mul(50).to(torch.bfloat16).float()  # what a bf16 forward yields
    special = torch.tensor([1.0, 6.0, 448.0, 2688.0, 0.5, 3.0, 1e-3, 65504.0, 2.0**-20, 1234.5678])
    return torch.cat([log_uniform, bf16, special]).float()


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    amax = amax_values()
    mo_nvfp4, mo_fp8, ct_global, ct_fp8 = [], [], [], []
    fp8_args = QuantizationArgs(num_bits=8, type="float", strategy="tensor", symmetric=True, dynamic=False)
    for a in amax:
        q = TensorQuantizer(QuantizerAttributeConfig(num_bits=(2, 1), block_sizes={-1: 16, "type": "dynamic", "scale_bits": (4, 3)}))
        q.amax = a.clone()
        mo_nvfp4.append(NVFP4QTensor.get_activation_scaling_factor(q).reshape(()))
        f = TensorQuantizer(QuantizerAttributeConfig(num_bits=(4, 3), axis=None))
        f.amax = a.clone()
        mo_fp8.append(get_scaling_factor(f).reshape(()))
        ct_global.append(generate_gparam((-a).reshape(1), a.reshape(1)).reshape(()))
        scale, _ = calculate_qparams((-a).reshape(1), a.reshape(1), fp8_args)
        ct_fp8.append(scale.float().reshape(()))
    t = {
        "amax": amax.contiguous(),
        "modelopt_nvfp4": torch.stack(mo_nvfp4).float().contiguous(),
        "modelopt_fp8": torch.stack(mo_fp8).float().contiguous(),
        "ct_nvfp4_global": torch.stack(ct_global).float().contiguous(),
        "ct_fp8": torch.stack(ct_fp8).float().contiguous(),
    }
    save_file(t, os.path.join(out_dir, "input_scale.safetensors"))
    print(f"input_scale: {len(amax)} amax values")


if __name__ == "__main__":
    main(sys.argv[1])
