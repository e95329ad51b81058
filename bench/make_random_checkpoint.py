"""A random-initialized checkpoint with the real tensor names and shapes of a Hub MoE, for
end-to-end timing (bench/e2e_quantize.sh). Weights are N(0, 0.02) bf16 (norms and scales
ones), drawn on the GPU when there is one; tensors as the Hub checkpoints store them; ~5 GB
shards, written by 16 threads straight into the files (pwrite at planned offsets).
Usage: python3 make_random_checkpoint.py FAMILY OUT_DIR
  olmoe        OLMoE-1B-7B-0924 (13.8 GB)
  gemma4       Gemma-4-26B-A4B (Gemma4ForConditionalGeneration, ~51 GB, vision tower included)
  deepseek-v3  DeepSeek-V3 / R1 as published (FP8 block 128 with F32 weight_scale_inv), real
               dimensions, 3 layers (1 dense + 2 MoE of 256 experts), no MTP layer (~27 GB)
  qwen3moe     Qwen3-30B-A3B (Qwen3MoeForCausalLM) at real dimensions; MOEQ_LAYERS layers (default
               4 of its 48: 6.2 GB; per-layer cost is what a benchmark reads, see bench/gptq_bench.sh)
  olmoe-mini, gemma4-mini, deepseek-v3-mini: 2-3 layers, 8 experts, small widths, for tests
FP8 weights (deepseek-v3*): codes clamp(N(0, 64), +-448) as F8_E4M3, scale_inv U(2e-5, 1.2e-4)
F32 per [128, 128] block (partial edge blocks as the published shapes have them: DeepSeek's
576-row kv_a_proj_with_mqa), so the decoded weights are ~N(0, 0.005)."""
import json
import math
import os
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import torch


def per_expert_tensors(p, E, H, I):
    """mlp.experts.{e}.{gate,up,down}_proj.weight of one layer, one tensor per expert (OLMoE, Qwen3-MoE)."""
    return [(p + f"mlp.experts.{e}.{n}_proj.weight", shape)
            for e in range(E) for n, shape in (("gate", (I, H)), ("up", (I, H)), ("down", (H, I)))]


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
        t += per_expert_tensors(p, E, H, I)
    t += [("model.norm.weight", (H,)), ("lm_head.weight", (V, H))]
    return cfg, t


def gemma4(L=30, E=128, H=2816, I=704, D=2112, V=262144, heads=16, kv=8, hd=256, gkv=2, ghd=512,
           vis=dict(hidden=1152, layers=27, inter=4304, heads=16, hd=72, patch=16, pos=10240)):
    """Gemma-4-26B-A4B (google/gemma-4-26B-A4B config.json): 30 layers (5 sliding : 1 full),
    hidden 2816, dense MLP 2112 beside 128 experts of 704 (top 8, fused 3D gate_up_proj /
    down_proj), sliding layers 8 kv heads of 256, full layers 2 kv heads of 512 with k = v
    (attention_k_eq_v: no v_proj), vocab 262144, tied embeddings. Names as transformers 5.17's
    Gemma4ForConditionalGeneration saves them; the vision tower (hidden 1152, head 72, 16
    heads as in the config; 27 layers and MLP 4304, the SigLIP-so400m sizes, are assumed) is
    copy-through for moeq."""
    layer_types = [("full_attention" if (i + 1) % 6 == 0 else "sliding_attention") for i in range(L)]
    if L < 6:
        layer_types = ["sliding_attention"] * (L - 1) + ["full_attention"]
    text = dict(model_type="gemma4_text", hidden_size=H, num_hidden_layers=L, intermediate_size=D,
                moe_intermediate_size=I, num_experts=E, top_k_experts=8, enable_moe_block=True,
                num_attention_heads=heads, num_key_value_heads=kv, num_global_key_value_heads=gkv, head_dim=hd,
                global_head_dim=ghd, attention_k_eq_v=True, vocab_size=V, vocab_size_per_layer_input=V,
                hidden_size_per_layer_input=0, num_kv_shared_layers=0, use_double_wide_mlp=False,
                hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6, sliding_window=1024,
                max_position_embeddings=262144, final_logit_softcapping=30.0, attention_bias=False,
                attention_dropout=0.0, layer_types=layer_types, tie_word_embeddings=True,
                use_bidirectional_attention="vision", dtype="bfloat16", pad_token_id=0, bos_token_id=2, eos_token_id=1,
                rope_parameters={"full_attention": {"partial_rotary_factor": 0.25, "rope_theta": 1000000.0,
                                                    "rope_type": "proportional"},
                                 "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}})
    vision = dict(model_type="gemma4_vision", hidden_size=vis["hidden"], intermediate_size=vis["inter"],
                  num_hidden_layers=vis["layers"], num_attention_heads=vis["heads"], num_key_value_heads=vis["heads"],
                  head_dim=vis["hd"], patch_size=vis["patch"], position_embedding_size=vis["pos"],
                  pooling_kernel_size=3, default_output_length=280, standardize=True, use_clipped_linears=False,
                  hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6)
    cfg = dict(architectures=["Gemma4ForConditionalGeneration"], model_type="gemma4", text_config=text,
               vision_config=vision, audio_config=None, tie_word_embeddings=True, dtype="bfloat16",
               boi_token_id=255999, eoi_token_id=258882, image_token_id=258880, video_token_id=258884,
               vision_soft_tokens_per_image=280)
    m = "model.language_model."
    t = [(m + "embed_tokens.weight", (V, H))]
    for i in range(L):
        p = f"{m}layers.{i}."
        full = layer_types[i] == "full_attention"
        d, nkv = (ghd, gkv) if full else (hd, kv)
        a = p + "self_attn."
        t += [(a + "q_proj.weight", (heads * d, H)), (a + "k_proj.weight", (nkv * d, H))]
        if not full:
            t += [(a + "v_proj.weight", (nkv * d, H))]
        t += [(a + "o_proj.weight", (H, heads * d)), (a + "q_norm.weight", (d,)), (a + "k_norm.weight", (d,))]
        t += [(p + f"mlp.{n}_proj.weight", (D, H)) for n in ("gate", "up")] + [(p + "mlp.down_proj.weight", (H, D))]
        t += [(p + n + ".weight", (H,)) for n in ("input_layernorm", "post_attention_layernorm",
                                                  "pre_feedforward_layernorm", "post_feedforward_layernorm",
                                                  "pre_feedforward_layernorm_2", "post_feedforward_layernorm_1",
                                                  "post_feedforward_layernorm_2")]
        t += [(p + "layer_scalar", (1,)), (p + "router.proj.weight", (E, H)), (p + "router.scale", (H,)),
              (p + "router.per_expert_scale", (E,)), (p + "experts.gate_up_proj", (E, 2 * I, H)),
              (p + "experts.down_proj", (E, H, I))]
    t += [(m + "norm.weight", (H,))]
    vh, vi, vd = vis["hidden"], vis["inter"], vis["heads"] * vis["hd"]
    v = "model.vision_tower."
    t += [(v + "patch_embedder.input_proj.weight", (vh, 3 * vis["patch"] ** 2)),
          (v + "patch_embedder.position_embedding_table", (2, vis["pos"], vh))]
    for i in range(vis["layers"]):
        p = f"{v}encoder.layers.{i}."
        t += [(p + f"self_attn.{n}_proj.linear.weight", (vd, vh)) for n in "qkv"]
        t += [(p + "self_attn.o_proj.linear.weight", (vh, vd)), (p + "self_attn.q_norm.weight", (vis["hd"],)),
              (p + "self_attn.k_norm.weight", (vis["hd"],))]
        t += [(p + f"mlp.{n}_proj.linear.weight", (vi, vh)) for n in ("gate", "up")]
        t += [(p + "mlp.down_proj.linear.weight", (vh, vi))]
        t += [(p + n + ".weight", (vh,)) for n in ("input_layernorm", "post_attention_layernorm",
                                                  "pre_feedforward_layernorm", "post_feedforward_layernorm")]
    t += [(v + "std_bias", (vh,)), (v + "std_scale", (vh,)), ("model.embed_vision.embedding_projection.weight", (H, vh))]
    return cfg, t


def deepseek_v3(L=3, dense=1, E=256, H=7168, I=2048, D=18432, V=129280, heads=128, qlr=1536, kvlr=512, nope=128,
                rope=64, vd=128):
    """DeepSeek-V3 (deepseek-ai/DeepSeek-V3 config.json and model.safetensors.index.json): MLA
    attention (q_a_proj [1536, H], q_b_proj [heads * (nope + rope), 1536], kv_a_proj_with_mqa
    [kvlr + rope, H], kv_b_proj [heads * (nope + vd), kvlr], o_proj [H, heads * vd]), the first
    `dense` layers a dense MLP of 18432, then 256 routed experts of 2048 (per expert
    mlp.experts.{e}.{gate,up,down}_proj) + 1 shared expert + the sigmoid router (gate.weight BF16,
    e_score_correction_bias F32). Every linear but the router, embed_tokens and lm_head is FP8
    with a weight_scale_inv (as tests/python/make_published_quantized.py and
    make_published_layouts.py name them). L layers instead of 61, no MTP layer
    (num_nextn_predict_layers 0)."""
    cfg = dict(architectures=["DeepseekV3ForCausalLM"], model_type="deepseek_v3", attention_bias=False,
               attention_dropout=0.0, bos_token_id=0, eos_token_id=1, ep_size=1, first_k_dense_replace=dense,
               hidden_act="silu", hidden_size=H, initializer_range=0.02, intermediate_size=D, kv_lora_rank=kvlr,
               max_position_embeddings=163840, moe_intermediate_size=I, moe_layer_freq=1, n_group=8,
               n_routed_experts=E, n_shared_experts=1, norm_topk_prob=True, num_attention_heads=heads,
               num_experts_per_tok=8, num_hidden_layers=L, num_key_value_heads=heads, num_nextn_predict_layers=0,
               q_lora_rank=qlr, qk_nope_head_dim=nope, qk_rope_head_dim=rope, rms_norm_eps=1e-6,
               rope_scaling={"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0,
                             "original_max_position_embeddings": 4096, "type": "yarn"},
               rope_theta=10000, routed_scaling_factor=2.5, scoring_func="sigmoid", tie_word_embeddings=False,
               topk_group=4, topk_method="noaux_tc", torch_dtype="bfloat16", transformers_version="4.33.1",
               use_cache=True, v_head_dim=vd, vocab_size=V,
               quantization_config={"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                    "weight_block_size": [128, 128]})
    if E < 8:
        cfg.update(n_group=1, topk_group=1, num_experts_per_tok=min(2, E))
    t = [("model.embed_tokens.weight", (V, H))]

    def fp8(name, rows, cols):
        return [(name, (rows, cols), "F8_E4M3"), (name + "_scale_inv", (-(-rows // 128), -(-cols // 128)), "F32")]

    for i in range(L):
        p = f"model.layers.{i}."
        a = p + "self_attn."
        t += [(p + "input_layernorm.weight", (H,)), (p + "post_attention_layernorm.weight", (H,))]
        t += fp8(a + "q_a_proj.weight", qlr, H) + [(a + "q_a_layernorm.weight", (qlr,))]
        t += fp8(a + "q_b_proj.weight", heads * (nope + rope), qlr)
        t += fp8(a + "kv_a_proj_with_mqa.weight", kvlr + rope, H) + [(a + "kv_a_layernorm.weight", (kvlr,))]
        t += fp8(a + "kv_b_proj.weight", heads * (nope + vd), kvlr) + fp8(a + "o_proj.weight", H, heads * vd)
        m = p + "mlp."
        if i < dense:
            t += fp8(m + "gate_proj.weight", D, H) + fp8(m + "up_proj.weight", D, H) + fp8(m + "down_proj.weight", H, D)
            continue
        t += [(m + "gate.weight", (E, H)), (m + "gate.e_score_correction_bias", (E,), "F32")]
        for e in range(E):
            x = f"{m}experts.{e}."
            t += fp8(x + "gate_proj.weight", I, H) + fp8(x + "up_proj.weight", I, H) + fp8(x + "down_proj.weight", H, I)
        x = m + "shared_experts."
        t += fp8(x + "gate_proj.weight", I, H) + fp8(x + "up_proj.weight", I, H) + fp8(x + "down_proj.weight", H, I)
    t += [("model.norm.weight", (H,)), ("lm_head.weight", (V, H))]
    return cfg, t


def qwen3moe(L=4, E=128, H=2048, I=768, D=6144, V=151936, heads=32, kv=4, hd=128):
    """Qwen3-30B-A3B (Qwen/Qwen3-30B-A3B config.json): 48 layers, hidden 2048, 128 experts of 768
    (top 8, norm_topk_prob), 32 query heads and 4 KV heads of 128 with per-head q/k RMSNorm,
    vocab 151936, untied lm_head; experts stored one tensor per expert as the Hub has them."""
    cfg = dict(architectures=["Qwen3MoeForCausalLM"], model_type="qwen3_moe", hidden_size=H, intermediate_size=D,
               moe_intermediate_size=I, num_hidden_layers=L, num_attention_heads=heads, num_key_value_heads=kv,
               head_dim=hd, num_experts=E, num_experts_per_tok=8, norm_topk_prob=True, decoder_sparse_step=1,
               mlp_only_layers=[], vocab_size=V, max_position_embeddings=40960, rms_norm_eps=1e-6,
               rope_theta=1000000.0, tie_word_embeddings=False, attention_bias=False, attention_dropout=0.0,
               hidden_act="silu", initializer_range=0.02, use_sliding_window=False, sliding_window=None,
               router_aux_loss_coef=0.001, output_router_logits=False, bos_token_id=151643,
               eos_token_id=151645, torch_dtype="bfloat16")
    t = [("model.embed_tokens.weight", (V, H))]
    for i in range(L):
        p = f"model.layers.{i}."
        t += [(p + "self_attn.q_proj.weight", (heads * hd, H)), (p + "self_attn.k_proj.weight", (kv * hd, H)),
              (p + "self_attn.v_proj.weight", (kv * hd, H)), (p + "self_attn.o_proj.weight", (H, heads * hd)),
              (p + "self_attn.q_norm.weight", (hd,)), (p + "self_attn.k_norm.weight", (hd,)),
              (p + "input_layernorm.weight", (H,)), (p + "post_attention_layernorm.weight", (H,)),
              (p + "mlp.gate.weight", (E, H))]
        t += per_expert_tensors(p, E, H, I)
    t += [("model.norm.weight", (H,)), ("lm_head.weight", (V, H))]
    return cfg, t


FAMILIES = {
    "qwen3moe": lambda: qwen3moe(L=int(os.environ.get("MOEQ_LAYERS", "4"))),
    "olmoe": olmoe,
    "olmoe-mini": lambda: olmoe(2, 8, 256, 128, 1024),
    "gemma4": gemma4,
    "deepseek-v3": deepseek_v3,
    # hidden 320 and expert width 192: partial 128-blocks in both directions; kv_a 176 rows
    "deepseek-v3-mini": lambda: deepseek_v3(L=3, dense=1, E=8, H=320, I=192, D=384, V=512, heads=2, qlr=160,
                                            kvlr=144, nope=32, rope=32, vd=32),
    "gemma4-mini": lambda: gemma4(2, 8, 256, 64, 192, 1024, heads=4, kv=2, hd=64, gkv=1, ghd=128,
                                  vis=dict(hidden=64, layers=1, inter=128, heads=2, hd=32, patch=4, pos=16)),
}


SIZE = {"BF16": 2, "F32": 4, "F8_E4M3": 1}


def ones(name):
    return name.endswith(("norm.weight", "layer_scalar", "router.scale", "per_expert_scale", "std_scale"))


def write_checkpoint(out, tensors, shard_limit=5 << 30, threads=16):
    """Plans ~5 GB shards in order, writes each file's header, then fills the tensors from
    `threads` threads (each draws its tensor with its own seed and pwrites it in place)."""
    shards, cur, cur_bytes = [], [], 0
    for entry in tensors:  # (name, shape) for BF16, or (name, shape, dtype)
        name, shape, dtype = entry if len(entry) == 3 else (*entry, "BF16")
        nb = SIZE[dtype] * math.prod(shape)
        if cur and cur_bytes + nb > shard_limit:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append((name, shape, nb, dtype))
        cur_bytes += nb
    shards.append(cur)
    n = len(shards)
    files, fds, jobs, weight_map = [], [], [], {}
    for k, shard in enumerate(shards):
        files.append(f"model-{k + 1:05d}-of-{n:05d}.safetensors")
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for name, shape, nb, dtype in shard:
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + nb]}
            jobs.append((len(jobs), k, name, shape, off, dtype))
            weight_map[name] = files[-1]
            off += nb
        h = json.dumps(header, separators=(",", ":")).encode()
        h += b" " * ((8 - len(h) % 8) % 8)
        fd = os.open(os.path.join(out, files[-1]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.pwrite(fd, struct.pack("<Q", len(h)) + h, 0)
        os.ftruncate(fd, 8 + len(h) + off)
        fds.append((fd, 8 + len(h)))
    dev = "cuda" if torch.cuda.is_available() else "cpu"

    def fill(job):
        i, k, name, shape, off, dtype = job
        g = torch.Generator(device=dev).manual_seed(i)
        if dtype == "F8_E4M3":
            w = torch.randn(shape, generator=g, device=dev, dtype=torch.float32) * 64
            w = w.clamp_(-448, 448).to(torch.float8_e4m3fn).view(torch.uint8).cpu()
        elif dtype == "F32":
            w = torch.rand(shape, generator=g, device=dev, dtype=torch.float32)
            w = (w * 1e-4 + 2e-5) if name.endswith("_scale_inv") else (w - 0.5) * 0.02
            w = w.cpu()
        elif ones(name):
            w = torch.ones(shape, dtype=torch.bfloat16).view(torch.int16)
        else:
            w = (torch.randn(shape, generator=g, device=dev, dtype=torch.float32) * 0.02).to(torch.bfloat16).cpu()
            w = w.view(torch.int16)
        buf = memoryview(w.numpy()).cast("B")
        fd, start = fds[k]
        done = 0
        while done < len(buf):
            done += os.pwrite(fd, buf[done:done + (1 << 30)], start + off + done)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fill, jobs))
    for fd, _ in fds:
        os.close(fd)
    total = sum(nb for shard in shards for _, _, nb, _ in shard)
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    return total, n


def main():
    family, out = sys.argv[1], sys.argv[2]
    if family not in FAMILIES:
        sys.exit(f"unknown family {family}; one of {', '.join(FAMILIES)}")
    cfg, tensors = FAMILIES[family]()
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    total, n = write_checkpoint(out, tensors)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    print(f"{family}: {len(tensors)} tensors, {total / 1e9:.2f} GB in {n} shards, {time.time() - t0:.1f} s -> {out}")


if __name__ == "__main__":
    main()
