"""transformers' forward over the same calibration tokens as `moeq calibrate`, the baseline
of the calibration benchmark (issue 7, part 3): tokens/s of the plain forward (bf16,
experts_implementation="grouped_mm", sdpa attention, whole model on the GPU), and of the same
forward with statistics hooks that record the input amax of every linear and, per expert, of
the rows routed to it (what moeq's calibration collects).
Usage: python3 calib_torch_baseline.py MODEL_DIR IDS.npy BATCH
Prints one line per mode: `mode tokens tokens/s seconds peak_GiB`."""
import sys
import time

import numpy as np
import torch
import transformers


def run(model, ids, batch, hooks):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, ids.shape[0], batch):
            model.model(input_ids=ids[i:i + batch])  # the decoder: calibration needs no logits
    torch.cuda.synchronize()
    return time.perf_counter() - t, torch.cuda.max_memory_allocated() / 2**30


def add_stats_hooks(model):
    amax = {}

    def linear_hook(name):
        def h(mod, inp):
            x = inp[0].detach().abs().amax()
            amax[name] = torch.maximum(amax[name], x) if name in amax else x
        return h

    def experts_hook(name):
        def h(mod, args):
            x, idx = args[0], args[1]  # hidden [T, H], top_k_index [T, k]
            E = mod.gate_up_proj.shape[0]
            flat = idx.reshape(-1)
            rows = x.abs().amax(-1).repeat_interleave(idx.shape[1])
            per_e = torch.zeros(E, device=x.device, dtype=rows.dtype).scatter_reduce(0, flat, rows, "amax")
            amax[name] = torch.maximum(amax[name], per_e) if name in amax else per_e
        return h

    handles = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            handles.append(mod.register_forward_pre_hook(linear_hook(name)))
        elif type(mod).__name__.endswith("Experts") and hasattr(mod, "gate_up_proj"):
            handles.append(mod.register_forward_pre_hook(experts_hook(name)))
    return handles, amax


def main():
    model_dir, ids_path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    t = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.bfloat16, device_map="cuda", experts_implementation="grouped_mm",
        attn_implementation="sdpa")
    print(f"load {time.perf_counter() - t:.2f} s", flush=True)
    ids = torch.from_numpy(np.load(ids_path)).long().cuda()
    tokens = ids.numel()
    run(model, ids[:batch], batch, False)  # warm-up (kernels, allocator)
    s, peak = run(model, ids, batch, False)
    print(f"transformers_plain {tokens} {tokens / s:.0f} {s:.3f} {peak:.2f}", flush=True)
    handles, amax = add_stats_hooks(model)
    s, peak = run(model, ids, batch, True)
    print(f"transformers_hooks {tokens} {tokens / s:.0f} {s:.3f} {peak:.2f} ({len(amax)} hooked modules)", flush=True)


if __name__ == "__main__":
    main()
