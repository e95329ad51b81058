"""What a loaded model holds: bytes of its parameters, buffers and bitsandbytes quant states
(Linear4bit keeps absmax and code tensors in weight.quant_state, outside parameters and
buffers), against the bytes the same weights take in bfloat16."""
import torch

from .packed import PackedExpertWeight


def _quant_state_tensors(qs):
    out = [qs.absmax, qs.code]
    if qs.offset is not None:
        out.append(qs.offset)
    if qs.state2 is not None:
        out += [qs.state2.absmax, qs.state2.code]
    return [t for t in out if isinstance(t, torch.Tensor)]


def model_bytes(model):
    """{"bytes": held, "bf16_bytes": the same weights in bf16, "ratio": held / bf16,
    "experts_bytes", "experts_bf16_bytes", "experts_ratio": the same for the packed experts}.
    Each storage is counted once."""
    seen, held, bf16 = set(), 0, 0
    ex_held, ex_bf16 = 0, 0

    def count(t):
        key = (t.untyped_storage().data_ptr(), t.device)
        if key in seen:
            return 0
        seen.add(key)
        return t.untyped_storage().nbytes()

    for mod in model.modules():
        if isinstance(mod, PackedExpertWeight):
            n = sum(count(b) for b in mod.buffers(recurse=False))
            held, ex_held = held + n, ex_held + n
            bf16, ex_bf16 = bf16 + 2 * mod.logical_numel(), ex_bf16 + 2 * mod.logical_numel()
            continue
        for p in list(mod.parameters(recurse=False)) + list(mod.buffers(recurse=False)):
            held += count(p)
            qs = getattr(p, "quant_state", None)
            if qs is not None:  # bitsandbytes Params4bit: packed weight plus its quant state
                held += sum(count(t) for t in _quant_state_tensors(qs))
                bf16 += 2 * int(torch.Size(qs.shape).numel())
            elif p.is_floating_point():
                bf16 += 2 * p.numel()
            else:
                bf16 += p.nbytes
    return {"bytes": held, "bf16_bytes": bf16, "ratio": held / bf16,
            "experts_bytes": ex_held, "experts_bf16_bytes": ex_bf16, "experts_ratio": ex_held / ex_bf16 if ex_bf16 else None}
