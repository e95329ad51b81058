"""The routing cost of AWQ's gate_up fold (docs/awq.md): the fraction of top-k routing decisions
that change when the folded norm and router are kept in the source dtype (bf16).

    python scripts/quality/awq_routing_cost.py MODEL EXPORT EVAL.jsonl [samples seq_len]

EXPORT is a moeq export with moeq_awq/scales.safetensors (layers.L.experts.gate_up.awq_scale).
With exact arithmetic the fold changes nothing; what the export changes is the rounding of
w / s (norm) and R s (router columns). Equivalently, in the source's terms, the norm becomes
bf16(w / s) * s and the router bf16(R s) / s; everything else stays as the source. Both models run
in float32 (transformers, CPU) on the same eval tokens; per layer and token, the top-k expert set
of the source and of the rounded model are compared (a decision: one token, one layer).
"""
import json
import sys

import torch
from safetensors import safe_open
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM


def main():
    model_dir, export, eval_path = sys.argv[1:4]
    n, seq = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 5 else (16, 512)
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    ids = []
    for line in open(eval_path):
        ids += tok.encode(json.loads(line)["text"]).ids
        if len(ids) >= n * seq:
            break
    x = torch.tensor(ids[: n * seq]).view(n, seq)
    m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    src_dtype = torch.bfloat16
    k = m.config.num_experts_per_tok
    scales = {}
    with safe_open(f"{export}/moeq_awq/scales.safetensors", framework="pt") as f:
        for name in f.keys():
            if name.endswith(".experts.gate_up.awq_scale"):
                scales[int(name.split(".")[1])] = f.get_tensor(name)

    def topk_sets(model):
        got = {}

        def hook(layer):
            def h(_mod, inp, _out):
                logits = torch.nn.functional.linear(inp[0].reshape(-1, inp[0].shape[-1]), _mod.weight)
                got.setdefault(layer, []).append(logits.topk(k, dim=-1).indices.sort(-1).values)
            return h
        hs = [model.model.layers[L].mlp.gate.register_forward_hook(hook(L)) for L in scales]
        with torch.no_grad():
            for i in range(n):
                model(x[i : i + 1])
        for h in hs:
            h.remove()
        return {L: torch.cat(v) for L, v in got.items()}

    ref = topk_sets(m)
    with torch.no_grad():
        for L, s in scales.items():
            layer = m.model.layers[L]
            w = layer.post_attention_layernorm.weight
            w.copy_((w / s).to(src_dtype).float() * s)
            r = layer.mlp.gate.weight
            r.copy_((r * s).to(src_dtype).float() / s)
    got = topk_sets(m)
    total = changed = slots = 0
    for L in sorted(scales):
        a, b = ref[L], got[L]
        diff = (a != b).any(-1)
        # slots: experts of the source's top-k missing from the rounded model's
        miss = sum(len(set(p.tolist()) - set(q.tolist())) for p, q in zip(a[diff], b[diff]))
        print(f"layer {L}: {int(diff.sum())} of {a.shape[0]} top-{k} sets changed ({100 * diff.float().mean():.3f}%), "
              f"{miss} of {a.numel()} expert slots ({100 * miss / a.numel():.3f}%)")
        total += a.shape[0]
        changed += int(diff.sum())
        slots += miss
    print(f"all layers: {changed} of {total} top-{k} routing decisions changed ({100 * changed / total:.3f}%), "
          f"{slots} of {total * k} expert slots ({100 * slots / (total * k):.3f}%); {n} x {seq} eval tokens")


if __name__ == "__main__":
    main()
