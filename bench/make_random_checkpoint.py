"""A random-initialized checkpoint with the real tensor names and shapes of a Hub MoE, for
end-to-end timing (bench/e2e_quantize.sh). Weights are N(0, 0.02) bf16, drawn on the GPU when
there is one; per-expert 2D tensors as the Hub checkpoints store them; ~5 GB shards.
Usage: python3 make_random_checkpoint.py olmoe|olmoe-mini OUT_DIR (olmoe-mini: 2 layers, 8 experts, for tests)"""
import json
import os
import sys
import time

import torch
from safetensors.torch import save_file


def olmoe(L=16, E=64, H=2048, I=1024, V=50304):
    """OLMoE-1B-7B-0924: 16 layers, 64 experts, hidden 2048, moe intermediate 1024."""
    cfg = dict(architectures=["OlmoeForCausalLM"], model_type="olmoe", hidden_size=H, intermediate_size=I,
               num_hidden_layers=L, num_attention_heads=16, num_key_value_heads=16, num_experts=E,
               num_experts_per_tok=8, vocab_size=V, max_position_embeddings=4096, rms_norm_eps=1e-5,
               rope_theta=10000.0, tie_word_embeddings=False, norm_topk_prob=False, clip_qkv=None,
               router_aux_loss_coef=0.01, output_router_logits=False, pad_token_id=1, eos_token_id=50279,
               bos_token_id=None, hidden_act="silu", initializer_range=0.02, attention_bias=False,
               attention_dropout=0.0, torch_dtype="bfloat16")
    t = [("model.embed_tokens.weight", (V, H))]
    for i in range(L):
        p = f"model.layers.{i}."
        t += [(p + f"self_attn.{n}_proj.weight", (H, H)) for n in "qkvo"]
        t += [(p + "self_attn.q_norm.weight", (H,)), (p + "self_attn.k_norm.weight", (H,)),
              (p + "input_layernorm.weight", (H,)), (p + "post_attention_layernorm.weight", (H,)),
              (p + "mlp.gate.weight", (E, H))]
        for e in range(E):
            t += [(p + f"mlp.experts.{e}.gate_proj.weight", (I, H)), (p + f"mlp.experts.{e}.up_proj.weight", (I, H)),
                  (p + f"mlp.experts.{e}.down_proj.weight", (H, I))]
    t += [("model.norm.weight", (H,)), ("lm_head.weight", (V, H))]
    return cfg, t


def main():
    family, out = sys.argv[1], sys.argv[2]
    cfg, tensors = {"olmoe": olmoe, "olmoe-mini": lambda: olmoe(2, 8, 256, 128, 1024)}[family]()
    os.makedirs(out, exist_ok=True)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator(device=dev).manual_seed(0)
    t0 = time.time()
    shard, shard_bytes, shards = {}, 0, []

    def flush():
        nonlocal shard, shard_bytes
        if shard:
            shards.append(shard)
            name = f"model-{len(shards):05d}.safetensors"
            save_file(shard, os.path.join(out, name), metadata={"format": "pt"})
            shard, shard_bytes = {}, 0
    names = {}
    for name, shape in tensors:
        w = (torch.randn(shape, generator=g, device=dev, dtype=torch.float32) * 0.02).to(torch.bfloat16)
        if name.endswith("norm.weight"):
            w = torch.ones(shape, dtype=torch.bfloat16, device=dev)
        shard[name] = w.cpu()
        shard_bytes += w.numel() * 2
        names[name] = len(shards) + 1
        if shard_bytes >= 5 << 30:
            flush()
    flush()
    n = len(shards)
    final = {}
    for k in range(1, n + 1):
        new = f"model-{k:05d}-of-{n:05d}.safetensors"
        os.rename(os.path.join(out, f"model-{k:05d}.safetensors"), os.path.join(out, new))
        final[k] = new
    total = sum(2 * (torch.Size(s).numel()) for _, s in tensors)
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": {k: final[v] for k, v in names.items()}}, f, indent=1)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    print(f"{family}: {len(tensors)} tensors, {total / 1e9:.2f} GB in {n} shards, {time.time() - t0:.1f} s -> {out}")


if __name__ == "__main__":
    main()
