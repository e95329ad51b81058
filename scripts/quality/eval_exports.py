#!/usr/bin/env python3
"""One evaluator for every export of the head-to-head: moeq's, NVIDIA ModelOpt's, llm-compressor's.

Each export's quantized weights are dequantized in float32 from its own tensors and put in place
of the source weights of one transformers model (float32, CPU); for W4A4 exports the inputs of the
quantized experts are fake-quantized with the export's input scales, per expert, the way the
deployed kernel (and `moeq compare --calib`) does it. Every model runs the same forward on the same
token windows; the metrics are those of `moeq compare`'s report.json (tests/python/compare_eval_oracle.py):
positions 0..S-2, float64, KL(source || quantized) per position, perplexity from the mean NLL.

Layouts read:
  modelopt NVFP4 (hf_quant_config.json): weight uint8 [out, in/2] (E2M1, low nibble first),
      weight_scale float8_e4m3fn [out, in/16], weight_scale_2 float32 [], input_scale float32 []
      w = e2m1 * (weight_scale * weight_scale_2)   (float32; as moeq's --dump-dequant)
  compressed-tensors nvfp4-pack-quantized: weight_packed uint8, weight_scale e4m3, weight_global_scale
      (= 1 / weight_scale_2), input_global_scale (= 1 / input_scale)
      w = e2m1 * (weight_scale / weight_global_scale)     (compressed_tensors' dequantize)
  compressed-tensors pack-quantized INT4: weight_packed int32 [out, in/8] (8 nibbles, low first,
      offset 8), weight_scale [out, in/group], optional weight_zero_point; w = (q - zp) * scale

Activation fake quantization (NVFP4 W4A4), per 16-element block, as moeq's compare/act_fake_quant.h:
  sf = e4m3(min(block_amax / 6 / input_scale, 448)); q = e2m1_rne(x * (1 / (sf * input_scale)));
  x' = q * sf * input_scale

Usage:
  eval_exports.py [--weights-only] MODEL_DIR EVAL_IDS.safetensors OUT.json NAME=EXPORT_DIR ... [--chunk 4]
      (--weights-only: the exports' weights, activations unquantized)
  eval_exports.py --check-dequant MODEL_DIR EXPORT_DIR DUMP_DEQUANT_DIR   (bit-for-bit check)
"""
import glob
import json
import os
import re
import sys
import time

import torch
import transformers
from safetensors import safe_open

# code 0x8 (-0) decodes to +0, as moeq does (the sign of a zero weight changes nothing downstream)
E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])
EXPERT = re.compile(r"^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)$")


def read_tensors(d):
    out = {}
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        with safe_open(f, "pt") as h:
            for k in h.keys():
                out[k] = h.get_tensor(k)
    return out


def unpack_e2m1(packed):
    p = packed.to(torch.int64)
    codes = torch.stack([p & 0xF, p >> 4], dim=-1).reshape(p.shape[0], -1)
    return E2M1[codes]


def nvfp4_block_scale(scale, shape):
    return scale.float().repeat_interleave(16, dim=1)[:, : shape[1]]


def dequant_modelopt(t, base):
    v = unpack_e2m1(t[base + ".weight"])
    # one combined scale per block, then the product (moeq's --dump-dequant, bit for bit; the
    # correctly rounded (e2m1 * s) * s2 differs from it by 1 ulp in ~5% of the weights)
    return v * nvfp4_block_scale(t[base + ".weight_scale"].float() * t[base + ".weight_scale_2"].float(), v.shape)


def dequant_ct_nvfp4(t, base):
    v = unpack_e2m1(t[base + ".weight_packed"])
    s = t[base + ".weight_scale"].float() / t[base + ".weight_global_scale"].float()
    return v * nvfp4_block_scale(s, v.shape)


def dequant_ct_int4(t, base):
    p = t[base + ".weight_packed"].to(torch.int64) & 0xFFFFFFFF
    q = torch.stack([(p >> (4 * i)) & 0xF for i in range(8)], dim=-1).reshape(p.shape[0], -1) - 8
    if base + ".weight_shape" in t:
        rows, cols = t[base + ".weight_shape"].tolist()
        q = q[:rows, :cols]
    s = t[base + ".weight_scale"].float()
    g = q.shape[1] // s.shape[1]
    qf = q.float()
    if base + ".weight_zero_point" in t:
        zp = t[base + ".weight_zero_point"]
        if zp.dtype == torch.int32 and zp.shape[1] != s.shape[1]:  # packed zero points
            zp = torch.stack([((zp.to(torch.int64) & 0xFFFFFFFF) >> (4 * i)) & 0xF for i in range(8)], -1).reshape(zp.shape[0], -1)[:, : s.shape[1]] - 8
        qf = qf - zp.float().repeat_interleave(g, dim=1)
    return qf * s.repeat_interleave(g, dim=1)


def read_export(d):
    """{linear base name: float32 weight}, {base: input_scale} (W4A4 only), a description."""
    t = read_tensors(d)
    cfg = json.load(open(os.path.join(d, "config.json")))
    qc = cfg.get("quantization_config") or {}
    weights, in_scales = {}, {}
    hq = os.path.join(d, "hf_quant_config.json")
    if os.path.exists(hq):
        h = json.load(open(hq))
        algo = (h.get("quantization") or h).get("quant_algo")
        layout = f"modelopt {algo}"
        for k in t:
            if k.endswith(".weight_scale_2"):
                base = k[: -len(".weight_scale_2")]
                weights[base] = dequant_modelopt(t, base)
                if base + ".input_scale" in t and not str(algo).startswith("W4A16"):
                    in_scales[base] = float(t[base + ".input_scale"].float())
    elif qc.get("quant_method") == "compressed-tensors":
        layout = f"compressed-tensors {qc.get('format')}"
        for k in t:
            if k.endswith(".weight_packed"):
                base = k[: -len(".weight_packed")]
                if base + ".weight_global_scale" in t:
                    weights[base] = dequant_ct_nvfp4(t, base)
                    if base + ".input_global_scale" in t:
                        in_scales[base] = 1.0 / float(t[base + ".input_global_scale"].float())
                else:
                    weights[base] = dequant_ct_int4(t, base)
    else:
        raise SystemExit(f"{d}: neither hf_quant_config.json nor a compressed-tensors quantization_config")
    # size with every unquantized floating-point weight counted in bf16 (llm-compressor saves the
    # float32 model it calibrated as float32; moeq and ModelOpt keep the source's bf16)
    size = sum(v.numel() * 2 if (k.endswith(".weight") and v.dtype == torch.float32 and v.numel() > 1) else
               v.numel() * v.element_size() for k, v in t.items())
    return weights, in_scales, layout, size


class Model:
    """A transformers model whose expert / linear weights can be replaced, with per-expert act quant."""

    def __init__(self, model_dir):
        self.m = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        self.m.eval()
        self.inter = self.m.config.moe_intermediate_size
        self.params = dict(self.m.named_parameters())

    def set_weight(self, base, w):
        me = EXPERT.match(base)
        if me:
            layer, e, proj = int(me.group(1)), int(me.group(2)), me.group(3)
            ex = self.m.model.layers[layer].mlp.experts
            if proj == "down_proj":
                dst = ex.down_proj.data[e]
            else:  # gate_up_proj [E, 2I, H]: gate first (chunk(2) in Qwen3MoeExperts.forward)
                off = 0 if proj == "gate_proj" else self.inter
                dst = ex.gate_up_proj.data[e, off:off + self.inter]
        else:
            dst = self.params[base + ".weight"].data
        assert dst.shape == w.shape, (base, dst.shape, w.shape)
        dst.copy_(w)
        return "experts" if me else "other"

    def set_input_scales(self, in_scales):
        per = {}  # layer -> proj -> {expert: scale}
        for base, s in in_scales.items():
            me = EXPERT.match(base)
            if not me:
                raise SystemExit(f"{base}: input quantization of a non-expert linear is not implemented here")
            per.setdefault(int(me.group(1)), {}).setdefault(me.group(3), {})[int(me.group(2))] = s
        for layer, d in per.items():
            ex = self.m.model.layers[layer].mlp.experts
            g, u = d.get("gate_proj", {}), d.get("up_proj", {})
            assert g.keys() == u.keys(), f"layer {layer}: gate and up differ in which experts quantize their input"
            # one input, one scale: where gate and up differ (llm-compressor keeps each its own), the
            # larger, as a fused gate_up kernel takes it (and moeq compare --exports)
            differ = sum(g[e] != u[e] for e in g)
            if differ:
                print(f"layer {layer}: {differ} experts with different gate/up input scales: the larger is used", flush=True)
            n = ex.num_experts
            ex._h2h_gu = torch.tensor([max(g[e], u[e]) if e in g else 0.0 for e in range(n)]) if g else None
            dn = d.get("down_proj", {})
            ex._h2h_dn = torch.tensor([dn.get(e, 0.0) for e in range(n)]) if dn else None
            ex.forward = experts_forward_actquant.__get__(ex)


def e2m1_round(v):
    a = v.abs()
    q = torch.where(a < 2, torch.round(a * 2) * 0.5, torch.where(a < 4, torch.round(a), torch.round(a * 0.5) * 2)).clamp_max(6.0)
    return torch.where(v < 0, -q, q)


def nvfp4_act_fq(x, s):
    """moeq compare/act_fake_quant.cpp nvfp4_input_fake_quant, scalar scale s."""
    rows, n = x.shape
    xb = x.float().reshape(rows, n // 16, 16)
    s = torch.tensor(s, dtype=torch.float32)
    gs = torch.reciprocal(s)
    bmax = xb.abs().amax(-1, keepdim=True)
    sf = (gs * (bmax * (1.0 / 6.0))).clamp_max(448.0).to(torch.float8_e4m3fn).float()
    out = torch.where(sf != 0, torch.reciprocal(sf * torch.reciprocal(gs)), torch.zeros_like(sf))
    q = e2m1_round(xb * out)
    return (q * sf * s).to(x.dtype).view(rows, n)


def experts_forward_actquant(self, hidden_states, top_k_index, top_k_weights):
    """Qwen3MoeExperts.forward (transformers 5.17) with the inputs of gate_up and down fake-quantized."""
    final = torch.zeros_like(hidden_states)
    with torch.no_grad():
        mask = torch.nn.functional.one_hot(top_k_index, num_classes=self.num_experts).permute(2, 1, 0)
        hit = torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero()
    for e in hit:
        e = e[0]
        pos, tok = torch.where(mask[e])
        x = hidden_states[tok]
        if self._h2h_gu is not None and self._h2h_gu[e] > 0:
            x = nvfp4_act_fq(x, float(self._h2h_gu[e]))
        gate, up = torch.nn.functional.linear(x, self.gate_up_proj[e]).chunk(2, dim=-1)
        h = self.act_fn(gate) * up
        if self._h2h_dn is not None and self._h2h_dn[e] > 0:
            h = nvfp4_act_fq(h, float(self._h2h_dn[e]))
        h = torch.nn.functional.linear(h, self.down_proj[e]) * top_k_weights[tok, pos, None]
        final.index_add_(0, tok, h.to(final.dtype))
    return final


def export_size(d):
    return sum(os.path.getsize(f) for f in glob.glob(os.path.join(d, "*.safetensors")))


def check_dequant(model_dir, export_dir, deq_dir):
    """Every dumped tensor equals the evaluator's decode bit for bit; the one exception counted apart
    is the sign of zero (E2M1 code 0x8 is -0; moeq's dump writes +0 there)."""
    weights, _, layout, _ = read_export(export_dir)
    deq = read_tensors(deq_dir)
    bad, signed_zero_only, n_sz = 0, 0, 0
    for k, ref in deq.items():
        got = weights.get(k[: -len(".weight")])
        ref = ref.float()
        if got is not None and got.shape == ref.shape and torch.equal(got.view(torch.int32), ref.view(torch.int32)):
            continue
        if got is not None and got.shape == ref.shape and torch.equal(got, ref):  # equal values: only zeros' signs differ
            signed_zero_only += 1
            n_sz += int((got.view(torch.int32) != ref.view(torch.int32)).sum())
            continue
        bad += 1
        if bad <= 5:
            print(f"  MISMATCH {k}: max abs diff {None if got is None else (got - ref).abs().max().item()}")
    extra = [b for b in weights if b + ".weight" not in deq]
    print(f"{export_dir} ({layout}): {len(deq)} dumped tensors: {len(deq) - bad - signed_zero_only} bit-identical, "
          f"{signed_zero_only} equal in value with {n_sz} zeros of the other sign (bit-identical otherwise), {bad} differ; "
          f"{len(extra)} decoded tensors not in the dump")
    return bad == 0 and not extra


def main():
    if sys.argv[1] == "--check-dequant":
        sys.exit(0 if check_dequant(*sys.argv[2:5]) else 1)
    args = sys.argv[1:]
    chunk = 4
    weights_only = "--weights-only" in args  # ignore the exports' input scales (the weights-only twin)
    if weights_only:
        args.remove("--weights-only")
    if "--chunk" in args:
        i = args.index("--chunk")
        chunk = int(args[i + 1])
        del args[i:i + 2]
    model_dir, ids_file, out_json = args[:3]
    torch.set_grad_enabled(False)
    with safe_open(ids_file, "pt") as h:
        ids = h.get_tensor("ids")
    ref = Model(model_dir)
    variants = []
    for spec in args[3:]:
        name, d = spec.split("=", 1)
        weights, in_scales, layout, size = read_export(d)
        m = Model(model_dir)
        counts = {"experts": 0, "other": 0}
        elems = {"experts": 0, "other": 0}
        for base, w in weights.items():
            kind = m.set_weight(base, w)
            counts[kind] += 1
            elems[kind] += w.numel()
        if weights_only:
            in_scales = {}
        if in_scales:
            m.set_input_scales(in_scales)
        variants.append({"name": name, "dir": d, "layout": layout, "model": m,
                         "quantized_linears": counts, "quantized_weights": elems,
                         "activations": "W4A4" if in_scales else "weights only",
                         "input_scales": len(in_scales), "size_mib": size / 2**20, "stored_mib": export_size(d) / 2**20,
                         "kl_sum": 0.0, "kl_max": 0.0, "nll_sum": 0.0, "top1": 0})
    n_pos, nll_ref = 0, 0.0
    t0 = time.time()
    for i in range(0, ids.shape[0], chunk):
        x = ids[i:i + chunk]
        tgt = x[:, 1:].unsqueeze(-1)
        lr = torch.log_softmax(ref.m(x).logits[:, :-1].double(), -1)
        nll_ref += -lr.gather(-1, tgt).sum().item()
        n_pos += tgt.numel()
        for v in variants:
            lq = torch.log_softmax(v["model"].m(x).logits[:, :-1].double(), -1)
            kl = (lr.exp() * (lr - lq)).sum(-1)
            v["kl_sum"] += kl.sum().item()
            v["kl_max"] = max(v["kl_max"], kl.max().item())
            v["nll_sum"] += -lq.gather(-1, tgt).sum().item()
            v["top1"] += (lr.argmax(-1) == lq.argmax(-1)).sum().item()
        print(f"[eval] {min(i + chunk, ids.shape[0])}/{ids.shape[0]} windows ({time.time() - t0:.0f} s)", flush=True)
    ppl_ref = float(torch.tensor(nll_ref / n_pos).exp())
    res = {"model": model_dir, "ids": ids_file, "windows": list(ids.shape), "positions": n_pos,
           "forward": f"transformers {transformers.__version__} float32 CPU, torch {torch.__version__}",
           "ppl_ref": ppl_ref, "variants": []}
    for v in variants:
        ppl = float(torch.tensor(v["nll_sum"] / n_pos).exp())
        res["variants"].append({k: v[k] for k in ("name", "dir", "layout", "activations", "input_scales", "quantized_linears",
                                                  "quantized_weights", "size_mib", "stored_mib", "kl_max")}
                               | {"kl_mean": v["kl_sum"] / n_pos, "ppl_quant": ppl, "ppl_delta": ppl - ppl_ref,
                                  "top1": v["top1"] / n_pos})
    json.dump(res, open(out_json, "w"), indent=1)
    print(f"reference ppl {ppl_ref:.4f} on {ids.shape[0]} x {ids.shape[1]} windows ({n_pos} predicted)")
    for v in res["variants"]:
        print(f"{v['name']:34s} {v['activations']:12s} {v['size_mib']:7.2f} MiB  experts {v['quantized_linears']['experts']:4d} "
              f"other {v['quantized_linears']['other']:3d}  ppl {v['ppl_quant']:.4f} ({v['ppl_delta']:+.4f})  KL {v['kl_mean']:.5f}  top1 {v['top1']:.4f}")


if __name__ == "__main__":
    main()
