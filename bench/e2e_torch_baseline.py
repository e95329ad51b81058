"""Today's tools, for bench/e2e_quantize.sh: transformers loads the checkpoint (bf16, CPU),
then every routed-expert weight goes to the GPU, is quantized to NVFP4 with torch ops (the
same math as moeq's torch-op path: per-tensor amax, fp8 block scales, E2M1 codes), and comes
back; safetensors writes the result. Prints the time of each phase.
Usage: python3 e2e_torch_baseline.py MODEL_DIR OUT_FILE"""
import sys
import time

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM


def nvfp4(x):
    """x [E, R, C] (or [R, C]) -> packed codes, fp8 block scales, per-expert global scale."""
    x3 = (x if x.dim() == 3 else x.unsqueeze(0)).float()
    E, R, C = x3.shape
    gs = x3.abs().amax((1, 2)) / torch.tensor(2688.0, device=x3.device)
    gs = torch.where(gs == 0, torch.ones_like(gs), gs).view(E, 1, 1)
    xb = x3.view(E, R, C // 16, 16)
    s = xb.abs().amax(-1) / (gs * 6)
    s = torch.where(s == 0, torch.ones_like(s), s).clamp(2 ** -9, 448.0).to(torch.float8_e4m3fn)
    v = xb / (s.float() * gs).unsqueeze(-1)
    a = v.abs()
    idx = ((a > 0.25).int() + (a >= 0.75).int() + (a > 1.25).int() + (a >= 1.75).int() + (a > 2.5).int() +
           (a >= 3.5).int() + (a > 5).int())
    code = (idx | ((v < 0).int() << 3)).view(E, R, C // 2, 2)
    packed = (code[..., 0] | (code[..., 1] << 4)).to(torch.uint8)
    return packed, s, gs.view(E)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
    t1 = time.time()
    out, nq = {}, 0
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    for name, w in model.state_dict().items():
        if ".experts." in name and w.dim() >= 2:
            q, s, g = nvfp4(w.to(dev))
            out[name] = q.cpu()
            out[name + "_scale"] = s.cpu()
            out[name + "_scale_2"] = g.cpu()
            nq += w.numel()
        else:
            out[name] = w.contiguous()
    if dev == "cuda":
        torch.cuda.synchronize()
    t2 = time.time()
    save_file(out, dst)
    t3 = time.time()
    print(f"torch baseline: load {t1 - t0:.2f} s, quantize {t2 - t1:.2f} s ({nq / 1e9:.2f} G expert weights), "
          f"save {t3 - t2:.2f} s, total {t3 - t0:.2f} s")


if __name__ == "__main__":
    main()
