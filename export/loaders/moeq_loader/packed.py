"""One fused experts parameter (`gate_up_proj` or `down_proj`) held as per-expert bitsandbytes
4-bit weights; indexing an expert dequantizes it on the fly.

transformers 5 keeps routed experts as fused 3D parameters and its eager experts forward reads
`self.gate_up_proj[e]` / `self.down_proj[e]` one hit expert at a time. `PackedExpertWeight`
takes the place of such a parameter: `weight[e]` dequantizes expert e's parts with
bitsandbytes.functional.dequantize_4bit (the QuantState rebuilt from the module's buffers with
the fields QuantState.from_dict gives) and arranges them as the parameter held them, so each
family's own forward runs unchanged and only the hit experts are ever dequantized.

Buffers, all per expert (leading dimension E), for each part P (`gate`, `up` or `down`):
`P_weight` uint8 [E, ceil(n/2)], `P_absmax` [E, blocks] (uint8 with double quantization, else
float32), `P_quant_map` float32 [16] and, with double quantization, `P_nested_absmax`
float32 [E, ceil(blocks/256)], `P_nested_quant_map` float32 [256], `P_offset` float32 [E]. The
code tables (quant_map, nested_quant_map) are stored once when every expert has the same
(bitsandbytes' fixed NF4/FP4 and dynamic maps), else per expert ([E, 16], [E, 256]).
"""
import torch
from bitsandbytes.functional import QuantState, dequantize_4bit

FIELDS = ("weight", "absmax", "quant_map", "nested_absmax", "nested_quant_map", "offset")
SHARED = ("quant_map", "nested_quant_map")  # one copy when equal for all experts


class PartMeta:
    """The non-tensor QuantState fields of one part, the same for every expert."""

    def __init__(self, qs):
        self.shape = tuple(qs.shape)
        self.blocksize = qs.blocksize
        self.quant_type = qs.quant_type
        self.dtype = qs.dtype
        self.nested = qs.state2 is not None
        self.nested_blocksize = qs.state2.blocksize if self.nested else None
        self.nested_dtype = qs.state2.dtype if self.nested else None

    def key(self):
        return (self.shape, self.blocksize, self.quant_type, self.dtype, self.nested, self.nested_blocksize, self.nested_dtype)


class PackedExpertWeight(torch.nn.Module):
    """parts: {name: (meta, [(packed uint8, QuantState) per expert])}; layout: "rows" (the
    parts stacked along the output rows: gate then up, as [2I, H]), "interleaved_t" (gate and
    up interleaved along the output and transposed, [H, 2I], gpt-oss) or "t" (one part,
    transposed). `where` names the parameter in errors."""

    def __init__(self, parts, layout, where):
        super().__init__()
        self.where, self.layout, self.meta = where, layout, {}
        for name, (meta, experts) in parts.items():
            self.meta[name] = meta
            stacks = {f: [] for f in FIELDS}
            for packed, qs in experts:
                stacks["weight"].append(packed.reshape(-1))
                stacks["absmax"].append(qs.absmax)
                stacks["quant_map"].append(qs.code)
                if meta.nested:
                    stacks["nested_absmax"].append(qs.state2.absmax)
                    stacks["nested_quant_map"].append(qs.state2.code)
                    stacks["offset"].append(qs.offset.reshape(()))
            for f, ts in stacks.items():
                if not ts:
                    continue
                same = f in SHARED and all(torch.equal(t, ts[0]) for t in ts)
                self.register_buffer(f"{name}_{f}", ts[0].clone() if same else torch.stack(ts))
        self.num_experts = len(next(iter(parts.values()))[1])

    def quant_state(self, name, e):
        """Expert e's QuantState for part `name`, with the fields QuantState.from_dict sets."""
        m = self.meta[name]
        def b(f):
            t = getattr(self, f"{name}_{f}")
            return t if f in SHARED and t.dim() == 1 else t[e]

        state2 = QuantState(absmax=b("nested_absmax"), blocksize=m.nested_blocksize, code=b("nested_quant_map"),
                            dtype=m.nested_dtype) if m.nested else None
        return QuantState(absmax=b("absmax"), shape=torch.Size(m.shape), code=b("quant_map"), blocksize=m.blocksize,
                          quant_type=m.quant_type, dtype=m.dtype, offset=b("offset") if m.nested else None, state2=state2)

    def dequantize_part(self, name, e):
        return dequantize_4bit(getattr(self, f"{name}_weight")[e].reshape(-1, 1), self.quant_state(name, e))

    def __getitem__(self, e):
        e = int(e)
        if not 0 <= e < self.num_experts:
            raise IndexError(f"{self.where}: expert {e} out of range (0..{self.num_experts - 1})")
        ws = [self.dequantize_part(name, e) for name in self.meta]
        if self.layout == "rows":
            return torch.cat(ws, 0)
        if self.layout == "interleaved_t":  # rows g0, u0, g1, u1, ... then [in, out]
            return torch.stack(ws, 1).reshape(-1, ws[0].shape[1]).t().contiguous()
        return ws[0].t().contiguous()

    def __len__(self):
        return self.num_experts

    @property
    def dtype(self):
        return next(iter(self.meta.values())).dtype

    def logical_numel(self):
        """Weights held (what a bf16 parameter of the same shape would store)."""
        n = 0
        for m in self.meta.values():
            n += self.num_experts * int(torch.Size(m.shape).numel())
        return n

    def extra_repr(self):
        parts = ", ".join(f"{k}: {list(m.shape)} {m.quant_type} block {m.blocksize}{' dq' if m.nested else ''}"
                          for k, m in self.meta.items())
        return f"experts={self.num_experts}, layout={self.layout}, {parts}"
