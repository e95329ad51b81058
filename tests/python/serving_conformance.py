"""Static rules that SGLang 0.5.23 and TensorRT-LLM (main, 2026) add to vLLM's for a ModelOpt HF
export, restated from their loader code (no import of either; vllm_conformance.py calls these
for every ModelOpt export it checks). Paths: SGLang under sglang/srt/, TensorRT-LLM under
tensorrt_llm/. docs/consumers.md lists what else differs and is not checkable statically.

 X1 exclude_modules never covers a quantized module, under each consumer's matching:
    vLLM   layers/quantization/modelopt.py apply_vllm_mapper (`PATH*` -> PATH, PATH.*) and
           is_layer_excluded (quant_utils.is_layer_skipped exact match, then a substring test
           `exclude in prefix`, then fnmatch);
    SGLang layers/quantization/modelopt_quant.py ModelOptQuantConfig.is_layer_excluded
           (`.` escaped, `*` -> `.*`, re.fullmatch on the prefix and on each dotted part);
    TRT-LLM models/modeling_utils.py QuantConfig.is_module_excluded_from_quantization
           (fnmatchcase on the name and each dotted ancestor; `PATH.*` also matches PATH).
    Names tried: each quantized checkpoint module, the fused linear a consumer builds from it
    (vllm_conformance F1 / S3 below) and the MoE module (`...experts`).
 S1 configs/model_config.py _parse_modelopt_quant_config: MIXED_PRECISION without an NVFP4 /
    W4A16_NVFP4 layer is routed to `w4afp8`, not ModelOpt.
 S2 layers/quantization/modelopt_quant.py ModelOptFp4Config.from_config: config.json's flat
    quantization_config is read first; NVFP4 needs `group_size` and an exclude list, read from
    `ignore` (then modules_to_not_convert, exclude_modules); quant_algo one of FP8, NVFP4,
    NVFP4_AWQ, W4A16_NVFP4 (ModelOptFp8Config.from_config: FP8 reads `ignore` too).
 S3 models/olmoe.py OlmoeForCausalLM.load_weights stacked_params_mapping: SGLang fuses OLMoE's
    q/k/v into qkv_proj (vLLM 0.34 runs OLMoE on the transformers backend, unfused), so their
    scales must agree as for the other families (vllm_conformance M2; SGLang takes the max too:
    ModelOptFp4LinearMethod.process_weights_after_loading).
 T1 quantization/modelopt_config.py parse_modelopt_quant_config / _read_legacy:
    hf_quant_config.json (authoritative) has a `quantization` dict; quant_algo, kv_cache_quant_algo
    and each quantized_layers quant_algo are QuantAlgo names; warn_if_inline_quant_config_differs:
    config.json's quantization_config (flat: `ignore`) agrees on quant_algo, kv_cache_quant_algo,
    group_size, the exclude list and the quantized_layers histogram.
 T2 _torch/modules/linear.py NVFP4LinearMethod.load_weight_scales asserts equal input_scale and
    weight_scale_2 across the shards of a fused linear, and _torch/modules/fused_moe/quantization.py
    NVFP4FusedMoEMethod.load_quant_scales reads `{e}.w1/w3/w2.input_scale` of every expert and
    asserts w1 == w3 (load_expert_fc31_input_scale_nvfp4): vllm_conformance's group check
    (M2/M3) is the same rule; TRT-LLM fails where vLLM warns.
"""
import fnmatch
import json
import re
from pathlib import Path

# TRT-LLM QuantAlgo members moeq can write (tensorrt_llm/quantization/mode.py QuantAlgo)
TRTLLM_ALGOS = {"FP8", "NVFP4", "W4A16_NVFP4", "MIXED_PRECISION"}
SGLANG_FP4_ALGOS = {"FP8", "NVFP4", "NVFP4_AWQ", "W4A16_NVFP4"}
# S3: fusion SGLang adds to vLLM's (tiny_models.py vllm_fused) per family
SGLANG_EXTRA_FUSED = {"olmoe": {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj",
                                "gate_proj": "gate_up_proj", "up_proj": "gate_up_proj"}}


def vllm_excluded(prefix, exclude, packed):
    """X1, vLLM 0.34 (after apply_vllm_mapper's `PATH*` expansion)."""
    ex = []
    for e in exclude:
        ex += [e[:-1], e[:-1] + ".*"] if len(e) >= 2 and e[-1] == "*" and e[-2] != "." else [e]
    proj = prefix.split(".")[-1]
    if proj in packed:
        if prefix in ex or any(prefix.replace(proj, s) in ex for s in packed[proj]):
            return True
    elif "experts" in prefix:
        if any(prefix in e for e in ex if "experts" in e):
            return True
    elif prefix in ex:
        return True
    return any(e != prefix and e in prefix for e in ex) or any(fnmatch.fnmatch(prefix, e) for e in ex)


def sglang_excluded(prefix, exclude):
    """X1, SGLang 0.5.23."""
    for e in exclude:
        r = re.compile(e.replace(".", r"\.").replace("*", ".*"))
        if r.fullmatch(prefix) or any(r.fullmatch(part) for part in prefix.split(".")):
            return True
    return False


def trtllm_excluded(prefix, exclude):
    """X1, TensorRT-LLM."""
    parts = prefix.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        for e in exclude:
            if fnmatch.fnmatchcase(name, e) or (e.endswith(".*") and name == e[:-2]):
                return True
    return False


def check_modelopt(export_dir, family, quantized, fused_of):
    """Problems of a ModelOpt export under S1, S2, T1 and X1. quantized: the checkpoint names of
    quantized linears; fused_of: shard suffix -> fused linear, vLLM's and SGLang's together."""
    problems = []
    d = Path(export_dir)
    hf = json.loads((d / "hf_quant_config.json").read_text())
    q = hf.get("quantization")
    if not isinstance(q, dict):
        return [f"{d}/hf_quant_config.json: no `quantization` dict (T1 _read_legacy)"]
    inline = json.loads((d / "config.json").read_text())["quantization_config"]
    algo = q.get("quant_algo")
    layers = q.get("quantized_layers") or {}
    for what, a in [("quant_algo", algo)] + [(f"quantized_layers[{k}]", v.get("quant_algo")) for k, v in layers.items()]:
        if a not in TRTLLM_ALGOS:
            problems.append(f"hf_quant_config.json {what} = {a!r}: not a TensorRT-LLM QuantAlgo moeq writes (T1)")
    if q.get("kv_cache_quant_algo") not in (None, "FP8", "NVFP4"):
        problems.append(f"hf_quant_config.json kv_cache_quant_algo = {q.get('kv_cache_quant_algo')!r} (T1)")
    hist = lambda ls: sorted((v.get("quant_algo") for v in (ls or {}).values()), key=str)  # noqa: E731
    for key, a, b in (("quant_algo", algo, inline.get("quant_algo")),
                      ("kv_cache_quant_algo", q.get("kv_cache_quant_algo"), inline.get("kv_cache_quant_algo")),
                      ("group_size", q.get("group_size"), inline.get("group_size")),
                      ("exclude list", sorted(q.get("exclude_modules") or []), sorted(inline.get("ignore") or [])),
                      ("quantized_layers", hist(layers), hist(inline.get("quantized_layers")))):
        if a != b:
            problems.append(f"config.json quantization_config {key} {b!r} != hf_quant_config.json's {a!r} (T1 "
                            "warn_if_inline_quant_config_differs; SGLang reads config.json)")
    if algo == "MIXED_PRECISION":
        if not any(str(v.get("quant_algo", "")).upper() in ("NVFP4", "W4A16_NVFP4") for v in layers.values()):
            problems.append("MIXED_PRECISION without an NVFP4 layer: SGLang reads it as w4afp8 (S1)")
    else:
        if algo not in SGLANG_FP4_ALGOS:
            problems.append(f"quant_algo {algo!r}: SGLang's ModelOpt configs refuse it (S2)")
        if "NVFP4" in str(algo) and inline.get("group_size") is None:
            problems.append("config.json quantization_config has no group_size: SGLang refuses NVFP4 (S2)")
        if not isinstance(inline.get("ignore"), list):
            problems.append("config.json quantization_config has no `ignore` list: SGLang reads its exclude list there (S2)")
    exclude = q.get("exclude_modules") or []
    packed = {}
    for s, f in fused_of.items():
        packed.setdefault(f, []).append(s)
    names = set(quantized)
    for m in quantized:
        base, proj = m.rsplit(".", 1)
        e = re.match(r"^(.*\.experts)\.\d+\.", m)
        if e:
            names.add(e.group(1))
        elif proj in fused_of:
            names.add(f"{base}.{fused_of[proj]}")
    for n in sorted(names):
        proj = n.split(".")[-1]
        pk = {proj: packed[proj]} if proj in packed else {}
        who = [c for c, hit in (("vLLM", vllm_excluded(n, exclude, pk)), ("SGLang", sglang_excluded(n, exclude)),
                                ("TensorRT-LLM", trtllm_excluded(n, exclude))) if hit]
        if who:
            problems.append(f"{n}: quantized, but exclude_modules {exclude} excludes it for {', '.join(who)} (X1)")
    return problems
