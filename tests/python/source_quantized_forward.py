#!/usr/bin/env python3
"""moeq's forward on checkpoints published QUANTIZED (FP8 block, MXFP4) against transformers'.

moeq decodes FP8-block and MXFP4 weights on read; this checks the whole path (decode, the plugin's
views, the native forward) by perplexity on fixed ids, float32, against two oracles:

1. transformers 5.17 loading the quantized checkpoint itself (`FineGrainedFP8Config(dequantize=True)`,
   `Mxfp4Config(dequantize=True)`), on layouts whose FP8 weights are whole 128x128 blocks:
   DeepSeek-V3 and Qwen3-FP8 at aligned dimensions, and gpt-oss MXFP4 (make_published_quantized.py).
2. Where weights end in partial blocks (DeepSeek's 576-row kv_a_proj_with_mqa; here expert width
   160 and the trained model's 96), transformers 5.17 is not an oracle: Fp8Dequantize._dequantize_one
   (integrations/finegrained_fp8.py) takes the block as shape // scale grid, so it refuses a weight
   whose rows do not divide by its scale rows (576 / 5) and silently decodes one that does with the
   wrong block (160 rows / 2 scale rows: 80-row blocks; perplexity off by ~10% below). There the
   oracle is the block decode written out here (weight * scale_inv of its 128x128 block, the
   layout's definition, rounded to bf16) saved as a bf16 checkpoint and run by transformers; the
   test prints what transformers' own load gives.
3. The trained qwen3moe-tiny (../shared) in the Qwen3-FP8 layout, on held-out text: a perplexity
   that means something (the bf16 source's is printed beside it).

Usage: source_quantized_forward.py MOEQ WORK [TRAINED_MODEL EVAL_JSONL]
"""
import json
import math
import os
import shutil
import subprocess
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_published_quantized as mpq  # noqa: E402

N, S, SEED = 3, 16, 7
RTOL = 1e-4  # float32 forwards: moeq's native one vs transformers' (the [forward] tests: logits within 1e-4)


def deepseek_aligned():
    """DeepSeek-V3 with every FP8 weight a whole number of 128x128 blocks."""
    return transformers.DeepseekV3Config(
        hidden_size=256, intermediate_size=384, moe_intermediate_size=128, n_routed_experts=mpq.E,
        num_experts_per_tok=mpq.K, n_shared_experts=1, first_k_dense_replace=1, n_group=2, topk_group=1,
        q_lora_rank=128, kv_lora_rank=64, qk_nope_head_dim=64, qk_rope_head_dim=64, v_head_dim=64,
        num_attention_heads=2, num_key_value_heads=2, head_dim=64, num_hidden_layers=2, vocab_size=mpq.V,
        max_position_embeddings=128, tie_word_embeddings=False)


def qwen_aligned():
    return transformers.Qwen3MoeConfig(
        hidden_size=256, intermediate_size=384, moe_intermediate_size=128, num_experts=mpq.E,
        num_experts_per_tok=mpq.K, decoder_sparse_step=1, num_attention_heads=2, num_key_value_heads=2,
        head_dim=64, num_hidden_layers=2, vocab_size=mpq.V, max_position_embeddings=128, tie_word_embeddings=False)


def sharp_random_model(cfg):
    """make_published_quantized's random model with peaked predictions (unit norms, larger embeddings
    and lm_head), so that perplexity moves when any weight is decoded wrong (its own random model
    predicts nearly uniformly: perplexity ~ vocabulary size whatever the weights)."""
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif "embed_tokens" in n or n.startswith("lm_head"):
                p.copy_(torch.randn_like(p) * 0.5)
            elif n.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.05)
            else:
                p.copy_(torch.randn_like(p) * 2.0 / math.sqrt(p.shape[-1]))
    return model.to(torch.bfloat16)


def make_aligned(maker, config_fn, out):
    """make_published_quantized's writer for a family, with the aligned config swapped in."""
    name = {"make_deepseek": "deepseek_config", "make_qwen": "qwen_config"}[maker.__name__]
    saved = getattr(mpq, name)
    setattr(mpq, name, config_fn)
    try:
        maker(out)
    finally:
        setattr(mpq, name, saved)


def fp8_decode(q, scale_inv, block=128):
    """The FP8-block layout's definition: each 128x128 block of q times its scale_inv (edge blocks
    partial), the product in float32 rounded to the checkpoint's bf16 (as a bf16 load decodes it)."""
    s = scale_inv.float().repeat_interleave(block, 0).repeat_interleave(block, 1)
    return (q.float() * s[: q.shape[0], : q.shape[1]]).to(torch.bfloat16)


def decoded_checkpoint(src, out):
    """src (FP8 block) with every weight decoded here (bf16), no quantization_config: oracle 2's model.
    Needs each weight's scale_inv in its own shard (scale_inv_pairs_in_one_shard)."""
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(src):
        p = os.path.join(src, f)
        if f.endswith(".safetensors"):
            t = load_file(p)
            d = {}
            for n, v in t.items():
                if n.endswith("_scale_inv"):
                    continue
                d[n] = fp8_decode(v, t[n + "_scale_inv"]) if n + "_scale_inv" in t else v
            save_file(d, os.path.join(out, f), metadata={"format": "pt"})
        elif f == "config.json":
            cfg = json.load(open(p))
            cfg.pop("quantization_config", None)
            json.dump(cfg, open(os.path.join(out, f), "w"))
        elif os.path.isfile(p):
            shutil.copy(p, out)
    # Every weight stays in its shard (scale_inv_pairs_in_one_shard put its scale beside it): the
    # index loses only the scales.
    index = os.path.join(out, "model.safetensors.index.json")
    if os.path.exists(index):
        wm = json.load(open(index))["weight_map"]
        json.dump({"metadata": {}, "weight_map": {n: f for n, f in wm.items() if not n.endswith("_scale_inv")}},
                  open(index, "w"))
    return out


def scale_inv_pairs_in_one_shard(d):
    """Move every `_scale_inv` next to its weight (decoded_checkpoint reads them shard by shard)."""
    index = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    wm = index["weight_map"]
    moved = {n: wm[n[: -len("_scale_inv")]] for n in wm if n.endswith("_scale_inv") and wm[n] != wm[n[: -len("_scale_inv")]]}
    if not moved:
        return
    shards = {f: load_file(os.path.join(d, f)) for f in set(wm.values())}
    for n, dest in moved.items():
        shards[dest][n] = shards[wm[n]].pop(n)
        wm[n] = dest
    for f, t in shards.items():
        save_file(t, os.path.join(d, f), metadata={"format": "pt"})
    json.dump(index, open(os.path.join(d, "model.safetensors.index.json"), "w"), indent=2)


def ppl(logits, ids):
    lp = torch.log_softmax(logits[:, :-1].double(), -1)
    return math.exp(-lp.gather(-1, ids[:, 1:].unsqueeze(-1)).mean().item())


def transformers_ppl(model_dir, ids, quantization_config=None):
    """Loaded as bf16 (the checkpoints' dtype: a quantized one is decoded into bf16, as moeq does),
    then run in float32."""
    kw = {"quantization_config": quantization_config} if quantization_config is not None else {}
    m, info = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16,
                                                                output_loading_info=True, **kw)
    m = m.float()
    bad = {k: list(v) for k, v in info.items() if v}
    if bad:
        raise RuntimeError(f"{model_dir}: transformers loaded with {bad}")
    m.eval()
    with torch.no_grad():
        return ppl(torch.cat([m(ids[i:i + 4]).logits.float() for i in range(0, len(ids), 4)]), ids)


def moeq_ppl(moeq, model_dir, ids_file, work):
    """`moeq compare --eval-ids` of the checkpoint as stored (decoded on read): its reference perplexity."""
    out = os.path.join(work, "compare")
    shutil.rmtree(out, ignore_errors=True)
    p = subprocess.run([moeq, "compare", model_dir, "--formats", "fp8", "--eval-ids", ids_file, "--eval-dtype",
                        "float32", "-o", out], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"moeq compare {model_dir}: exit {p.returncode}: {p.stderr.strip()[-400:]}")
    return json.load(open(os.path.join(out, "report.json")))["variants"][0]["output_error"]["ppl_ref"]


def random_ids(work, name, vocab):
    ids = torch.randint(vocab, (N, S), generator=torch.Generator().manual_seed(SEED))
    f = os.path.join(work, name + "_ids.safetensors")
    save_file({"ids": ids.contiguous()}, f)
    return ids, f


def text_ids(model_dir, eval_jsonl, work, n=8, s=128):
    """n windows of s tokens of the held-out text (documents concatenated), through the model's tokenizer.json."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    flat = []
    with open(eval_jsonl) as f:
        for line in f:
            flat += tok.encode(json.loads(line)["text"]).ids
            if len(flat) >= n * s:
                break
    ids = torch.tensor(flat[: n * s], dtype=torch.int64).view(n, s)
    path = os.path.join(work, "trained_ids.safetensors")
    save_file({"ids": ids.contiguous()}, path)
    return ids, path


def trained_fp8(model_dir, out):
    """The trained model in Qwen3-FP8's published layout: per-expert FP8 blocks, BF16 scale_inv,
    lm_head / embeddings / norms / routers in bf16 and listed in modules_to_not_convert."""
    sd = {}
    for f in sorted(os.listdir(model_dir)):
        if f.endswith(".safetensors"):
            sd.update(load_file(os.path.join(model_dir, f)))
    sd = mpq.unfuse_experts(sd)
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    not_convert = ["lm_head"] + [f"model.layers.{i}.mlp.gate" for i in range(cfg["num_hidden_layers"])]
    keep = lambda n: n.removesuffix(".weight") in not_convert or "embed_tokens" in n or "norm" in n
    sd = mpq.fp8_layout(sd, keep, torch.bfloat16)
    cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "modules_to_not_convert": not_convert,
                                  "quant_method": "fp8", "weight_block_size": [128, 128]}
    mpq.write_sharded(sd, cfg, out)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if os.path.exists(os.path.join(model_dir, f)):
            shutil.copy(os.path.join(model_dir, f), out)
    return out


def check(name, want, got, failures, note=""):
    ok = abs(got - want) <= RTOL * want
    line = f"{name:34s} ppl moeq {got:.7g}  oracle {want:.7g}  rel {abs(got - want) / want:.1e}  {'ok' if ok else 'MISMATCH'}{note}"
    print(line, flush=True)
    if not ok:
        failures.append(line)


def main():
    if len(sys.argv) not in (3, 5):
        sys.exit(__doc__)
    moeq, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    failures = []
    mpq.random_model = sharp_random_model
    fp8_dq = transformers.FineGrainedFP8Config(dequantize=True)

    # 1. transformers' own dequantizing load as the oracle (whole blocks; MXFP4 has no partial blocks).
    for name, build in [("deepseek_v3_fp8 (aligned)", lambda o: make_aligned(mpq.make_deepseek, deepseek_aligned, o)),
                        ("qwen3_moe_fp8 (aligned)", lambda o: make_aligned(mpq.make_qwen, qwen_aligned, o)),
                        ("gpt_oss_mxfp4", mpq.make_gpt_oss)]:
        d = os.path.join(work, name.split()[0] + ("_aligned" if "aligned" in name else ""))
        build(d)
        ids, ids_file = random_ids(work, os.path.basename(d), mpq.V)
        qc = transformers.Mxfp4Config(dequantize=True) if "mxfp4" in name else fp8_dq
        check(name + " vs transformers", transformers_ppl(d, ids, qc), moeq_ppl(moeq, d, ids_file, work), failures)

    # 2. Partial blocks: the block decode written here is the oracle; transformers' load is reported.
    d = os.path.join(work, "qwen3_moe_fp8")
    mpq.make_qwen(d)
    scale_inv_pairs_in_one_shard(d)
    ids, ids_file = random_ids(work, "qwen3_moe_fp8", mpq.V)
    want = transformers_ppl(decoded_checkpoint(d, d + "_decoded"), ids)
    got = moeq_ppl(moeq, d, ids_file, work)
    try:
        t = transformers_ppl(d, ids, fp8_dq)
        note = f"  (transformers' own FP8 load: {t:.7g}, rel {abs(t - want) / want:.1e})"
    except Exception as e:  # noqa: BLE001 - reported, not the oracle
        note = f"  (transformers' own FP8 load fails: {str(e).splitlines()[0][:80]})"
    check("qwen3_moe_fp8 (partial blocks)", want, got, failures, note)

    # 3. The trained model in Qwen3-FP8's layout, on held-out text.
    if len(sys.argv) == 5 and os.path.isdir(sys.argv[3]) and os.path.exists(sys.argv[4]):
        src, eval_jsonl = sys.argv[3], sys.argv[4]
        d = trained_fp8(src, os.path.join(work, "trained_fp8"))
        scale_inv_pairs_in_one_shard(d)
        ids, ids_file = text_ids(src, eval_jsonl, work)
        want = transformers_ppl(decoded_checkpoint(d, d + "_decoded"), ids)
        check("trained qwen3moe-tiny, Qwen3-FP8", want, moeq_ppl(moeq, d, ids_file, work), failures,
              f"  (bf16 source: {transformers_ppl(src, ids):.4f}, {ids.numel()} tokens)")
    else:
        print("trained qwen3moe-tiny: not beside the clone (../shared/models), case 3 not run")

    if failures:
        print(f"{len(failures)} mismatches")
        sys.exit(1)


if __name__ == "__main__":
    main()
