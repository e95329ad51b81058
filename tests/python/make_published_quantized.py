#!/usr/bin/env python3
"""Writes small checkpoints in the on-disk layouts of checkpoints published QUANTIZED.

  OUT/deepseek_v3_fp8/   DeepSeek-V3 / R1: FP8 block, F32 `weight_scale_inv`
  OUT/qwen3_moe_fp8/     Qwen3-30B-A3B-FP8 (and Qwen3.6-35B-A3B-FP8's text layers): FP8 block,
                         BF16 `weight_scale_inv`, `modules_to_not_convert`
  OUT/gpt_oss_mxfp4/     gpt-oss-20b / 120b: MXFP4 experts (`*_blocks`, `*_scales`), biases

Each is a transformers 5.17 model of the family (random weights, from_config) whose bf16
weights are quantized here into the published layout, written as two shards with
model.safetensors.index.json. Dimensions are scaled down; FP8 layouts keep partial 128-blocks
(DeepSeek hidden 192 and kv_a_proj_with_mqa 176 rows, expert width 160; Qwen hidden 256 keeps
some whole-block weights too).

Where each fact comes from (cited, not copied):
- /work/shared/FORMATS.md, "Pre-quantized sources in published checkpoints".
- transformers 5.17 integrations/finegrained_fp8.py: FP8Linear holds `weight` float8_e4m3fn
  [out, in] and `weight_scale_inv` [ceil(out/bn), ceil(in/bk)] (FP8Linear.__init__);
  Fp8Dequantize pairs `X.weight` with `X.weight_scale_inv`; quantizer_finegrained_fp8.py reads
  quantization_config {quant_method: fp8, fmt, activation_scheme, weight_block_size,
  modules_to_not_convert}.
- transformers 5.17 integrations/mxfp4.py: Mxfp4GptOssExperts holds gate_up_proj U8
  [E, 2I, H/32, 16], gate_up_proj_bias [E, 2I], down_proj U8 [E, H, I/32, 16], down_proj_bias
  [E, H]; the checkpoint names are `<proj>_blocks` / `<proj>_scales` (Mxfp4Dequantize);
  convert_moe_packed_tensors decodes blocks (low nibble first) and scales (E8M0, 2^(s-127)) to
  [E, 2I, H] and transposes to the bf16 module's [E, H, 2I].
- DeepSeek-V3's config.json (huggingface.co/deepseek-ai/DeepSeek-V3): quantization_config
  {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
  "weight_block_size": [128, 128]}; router `mlp.gate.weight` BF16 and
  `e_score_correction_bias` F32, norms / embeddings / lm_head BF16.
- Qwen3.6-35B-A3B-FP8 / Qwen3-30B-A3B-FP8 model cards (e.g. friendli.ai's summary of the
  official layout): bf16 `*.weight_scale_inv`, per-expert `mlp.experts.{E}.{gate,up,down}_proj`,
  lm_head, embeddings, norms and routers in modules_to_not_convert.
- gpt-oss-20b's config.json: quantization_config {"quant_method": "mxfp4",
  "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
  "model.embed_tokens", "lm_head"]}.

Usage: make_published_quantized.py OUT [LAYOUT ...]
"""
import json
import math
import os
import sys

import torch
import transformers
from safetensors.torch import save_file

E, K, V = 4, 2, 256
FP8_MAX = 448.0
E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def deepseek_config():
    return transformers.DeepseekV3Config(
        hidden_size=192, intermediate_size=320, moe_intermediate_size=160, n_routed_experts=E, num_experts_per_tok=K,
        n_shared_experts=1, first_k_dense_replace=1, n_group=2, topk_group=1, q_lora_rank=160, kv_lora_rank=144,
        qk_nope_head_dim=32, qk_rope_head_dim=32, v_head_dim=32, num_attention_heads=2, num_key_value_heads=2,
        head_dim=32, num_hidden_layers=2, vocab_size=V, max_position_embeddings=128, tie_word_embeddings=False)


def qwen_config():
    return transformers.Qwen3MoeConfig(
        hidden_size=256, intermediate_size=384, moe_intermediate_size=160, num_experts=E, num_experts_per_tok=K,
        decoder_sparse_step=1, num_attention_heads=2, num_key_value_heads=1, head_dim=64, num_hidden_layers=2,
        vocab_size=V, max_position_embeddings=128, tie_word_embeddings=False)


def gpt_oss_config():
    return transformers.GptOssConfig(
        hidden_size=96, intermediate_size=64, num_local_experts=E, num_experts_per_tok=K, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, num_hidden_layers=2, vocab_size=V, max_position_embeddings=128,
        layer_types=["sliding_attention", "full_attention"], tie_word_embeddings=False)


def random_model(cfg):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    return model.to(torch.bfloat16)


def unfuse_experts(sd):
    """transformers 5.x keeps experts fused in memory; the published FP8 checkpoints store them per expert."""
    out = {}
    for name, t in sd.items():
        if name.endswith("mlp.experts.gate_up_proj"):
            base = name[: -len("gate_up_proj")]
            inter = t.shape[1] // 2
            for e in range(t.shape[0]):
                out[f"{base}{e}.gate_proj.weight"] = t[e, :inter].contiguous()
                out[f"{base}{e}.up_proj.weight"] = t[e, inter:].contiguous()
        elif name.endswith("mlp.experts.down_proj"):
            base = name[: -len("down_proj")]
            for e in range(t.shape[0]):
                out[f"{base}{e}.down_proj.weight"] = t[e].contiguous()
        else:
            out[name] = t.contiguous()
    return out


def fp8_block_quantize(w, scale_dtype, block=128):
    """w [out, in] -> (F8_E4M3 [out, in], scale_inv [ceil(out/128), ceil(in/128)]): DeepSeek's recipe, amax / 448."""
    rows, cols = w.shape
    sr, sc = math.ceil(rows / block), math.ceil(cols / block)
    pad = torch.zeros(sr * block, sc * block, dtype=torch.float32)
    pad[:rows, :cols] = w.float()
    blocks = pad.view(sr, block, sc, block)
    amax = blocks.abs().amax(dim=(1, 3)).clamp_min(1e-12)
    scale = (amax / FP8_MAX).to(scale_dtype)
    q = (blocks / scale.float()[:, None, :, None]).clamp(-FP8_MAX, FP8_MAX).view(sr * block, sc * block)
    return q[:rows, :cols].to(torch.float8_e4m3fn).contiguous(), scale.contiguous()


def fp8_layout(sd, keep_bf16, scale_dtype):
    out = {}
    for name, t in sd.items():
        if t.dim() == 2 and name.endswith(".weight") and not keep_bf16(name):
            q, s = fp8_block_quantize(t, scale_dtype)
            out[name] = q
            out[name + "_scale_inv"] = s
        else:
            out[name] = t
    return out


def mxfp4_encode(w):
    """w [..., out, in] -> (blocks U8 [..., out, in/32, 16], scales U8 [..., out, in/32]); OCP MX rounding."""
    *lead, rows, cols = w.shape
    x = w.float().reshape(*lead, rows, cols // 32, 32)
    amax = x.abs().amax(-1)
    exp = torch.where(amax > 0, torch.floor(torch.log2(amax.clamp_min(1e-38))) - 2, torch.full_like(amax, -127))
    exp = exp.clamp(-127, 127)
    v = x / torch.exp2(exp)[..., None]
    code = (v.abs()[..., None] - E2M1).abs().argmin(-1)  # nearest magnitude (ties to the lower code)
    code = code | ((v < 0).to(torch.int64) << 3)
    code = code.to(torch.uint8).reshape(*lead, rows, cols // 32, 16, 2)
    blocks = code[..., 0] | (code[..., 1] << 4)  # element 2j in the low nibble
    return blocks.contiguous(), (exp + 127).to(torch.uint8).contiguous()


def write_sharded(sd, cfg_dict, out):
    os.makedirs(out, exist_ok=True)
    names = sorted(sd)
    half = len(names) // 2
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in sd.values())}, "weight_map": {}}
    for i, part in enumerate((names[:half], names[half:])):
        fname = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({n: sd[n] for n in part}, os.path.join(out, fname), metadata={"format": "pt"})
        for n in part:
            index["weight_map"][n] = fname
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg_dict, f, indent=2)


def config_dict(model, quantization_config):
    d = model.config.to_dict()
    d["torch_dtype"] = "bfloat16"
    d["quantization_config"] = quantization_config
    return d


def make_deepseek(out):
    model = random_model(deepseek_config())
    sd = unfuse_experts(model.state_dict())
    sd = {n: (t.float() if n.endswith("e_score_correction_bias") else t) for n, t in sd.items()}
    keep = lambda n: n.endswith("mlp.gate.weight") or "embed_tokens" in n or n.startswith("lm_head") or "layernorm" in n
    sd = fp8_layout(sd, keep, torch.float32)
    qc = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]}
    write_sharded(sd, config_dict(model, qc), out)


def make_qwen(out):
    model = random_model(qwen_config())
    sd = unfuse_experts(model.state_dict())
    n_layers = model.config.num_hidden_layers
    not_convert = ["lm_head"] + [f"model.layers.{i}.mlp.gate" for i in range(n_layers)]
    keep = lambda n: n.removesuffix(".weight") in not_convert or "embed_tokens" in n or "norm" in n
    sd = fp8_layout(sd, keep, torch.bfloat16)
    qc = {"activation_scheme": "dynamic", "fmt": "e4m3", "modules_to_not_convert": not_convert, "quant_method": "fp8",
          "weight_block_size": [128, 128]}
    write_sharded(sd, config_dict(model, qc), out)


def make_gpt_oss(out):
    model = random_model(gpt_oss_config())
    sd = {}
    for name, t in model.state_dict().items():
        if name.endswith("mlp.experts.gate_up_proj") or name.endswith("mlp.experts.down_proj"):
            blocks, scales = mxfp4_encode(t.transpose(1, 2))  # published rows are [out, in]
            sd[name + "_blocks"] = blocks
            sd[name + "_scales"] = scales
        else:
            sd[name] = t.contiguous()
    # One block far below its expert's others (2^-30 of its scale): its E8M0 scale has no E4M3
    # value under the global scale an exact MXFP4 -> NVFP4 conversion picks, so it is the one
    # block such a conversion re-quantizes (the published checkpoints' spread is similar: tiny
    # blocks below 2^-9 of the largest).
    s = sd["model.layers.1.mlp.experts.down_proj_scales"]
    s[0, 0, 0] = int(s[0, 0, 0]) - 30
    qc = {"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens",
                                     "lm_head"], "quant_method": "mxfp4"}
    write_sharded(sd, config_dict(model, qc), out)


LAYOUTS = {"deepseek_v3_fp8": make_deepseek, "qwen3_moe_fp8": make_qwen, "gpt_oss_mxfp4": make_gpt_oss}


def main_args(args):
    if not args:
        sys.exit("usage: make_published_quantized.py OUT [LAYOUT ...]")
    out = args[0]
    for name in args[1:] or LAYOUTS:
        if name not in LAYOUTS:
            sys.exit(f"make_published_quantized.py: unknown layout '{name}' (known: {', '.join(LAYOUTS)})")
        LAYOUTS[name](os.path.join(out, name))
        print(f"wrote {os.path.join(out, name)}")


if __name__ == "__main__":
    main_args(sys.argv[1:])
