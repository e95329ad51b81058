"""Writes tests/data/awq_ref.safetensors: NVIDIA ModelOpt's awq_lite scale search on one
nn.Linear with given activations, the oracle of moeq's AWQ search (tests/quant/test_awq.cpp).

    python tests/python/make_awq_reference.py tests/data/awq_ref.safetensors

ModelOpt (nvidia-modelopt 0.47.0, the project venv, CPU) runs its own awq_lite through
mtq.quantize on a model that is a single float32 nn.Linear [32 out, 128 in]: INT4_AWQ_CFG
(weight-only) with blocks of 32 inputs, alpha_step 0.1, debug=True so the search's record stays
on the module. INT4, not NVFP4: ModelOpt's NVFP4 fake quantization of the search (dynamic
blocks) runs on CUDA only. ModelOpt's INT4 rounding (scale 7 / block amax, round half to even,
clamp to [-8, 7]) differs from moeq's int4 format (amax / 7.5, llm-compressor's), so the test
hands moeq's search that quantizer, transcribed; the search is what the oracle checks. The activations X [512, 128] have per-channel scales
(a few large channels, one dead) and go through the model in one batch, so ModelOpt's
act_scale is mean|X| over the 512 rows and its loss is the mean squared output error.
Stored: w, x, x_mean (mean |x| per channel), h (2/n X^T X, the Hessian moeq takes), and ModelOpt's
loss per alpha, best alpha and best scale (awq_lite.loss, best_alpha, best_scale), with the weight
it leaves on the module (W x best_scale) and the pre_quant_scale of its input quantizer.
The output is committed: moeq's tests do not import ModelOpt.
"""
import copy
import sys

import torch
from safetensors.torch import save_file

import modelopt
import modelopt.torch.quantization as mtq


BLOCK = 32


def main(out_path):
    torch.manual_seed(16)
    out_f, in_f, n = 32, 128, 512
    w = (torch.randn(out_f, in_f) * 0.05).to(torch.bfloat16).float()
    w[:, 5] *= 4.0  # a salient weight column
    ch = torch.exp(torch.randn(in_f) * 0.8)
    ch[[3, 17, 64]] *= 12.0  # outlier activation channels
    x = (torch.randn(n, in_f) @ (torch.eye(in_f) + 0.1 * torch.randn(in_f, in_f))) * ch
    x[:, 100] = 0.0  # a dead channel
    x = x.to(torch.bfloat16).float()

    lin = torch.nn.Linear(in_f, out_f, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    model = torch.nn.Sequential(lin)
    cfg = copy.deepcopy(mtq.INT4_AWQ_CFG)
    cfg["algorithm"] = {"method": "awq_lite", "alpha_step": 0.1, "debug": True}
    for e in cfg["quant_cfg"]:
        if e.get("quantizer_name") == "*weight_quantizer":
            e["cfg"]["block_sizes"] = {-1: BLOCK, "type": "static"}
    mtq.quantize(model, cfg, forward_loop=lambda m: m(x.unsqueeze(0)))
    q = model[0]
    helper = q.awq_lite
    alphas = sorted(helper.loss.keys())
    loss = torch.tensor([float(helper.loss[a]) for a in alphas], dtype=torch.float64)
    best = torch.tensor([helper.best_alpha], dtype=torch.float64)
    print("modelopt", modelopt.__version__, "alphas", [round(a, 3) for a in alphas], "best", helper.best_alpha)
    print("loss", [f"{v:.6g}" for v in loss.tolist()])
    pqs = q.input_quantizer.pre_quant_scale
    h = (2.0 / n) * (x.double().t() @ x.double())
    save_file(
        {
            "w": w.contiguous(),
            "x": x.contiguous(),
            "x_mean": x.abs().mean(0).contiguous(),
            "h": h.float().contiguous(),
            "alphas": torch.tensor(alphas, dtype=torch.float64),
            "loss": loss,
            "best_alpha": best,
            "best_scale": helper.best_scale.float().contiguous(),
            "weight_after": q.weight.detach().float().contiguous(),
            "pre_quant_scale": pqs.float().contiguous() if pqs is not None else torch.zeros(0),
        },
        out_path,
        metadata={"modelopt": modelopt.__version__, "torch": torch.__version__, "config": "INT4_AWQ_CFG, block 32, alpha_step 0.1"},
    )


if __name__ == "__main__":
    main(sys.argv[1])
