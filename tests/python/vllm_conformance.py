"""moeq's own conformance checker of ModelOpt / compressed-tensors exports against what vLLM 0.34
creates for them, written from vLLM's loader code (no vLLM import: the rules below restate it,
each citing the file and function it comes from; paths under vllm/model_executor/).

It maps every tensor of an export to the parameter vLLM would load it into and reports:
  - a tensor no parameter receives (an unknown suffix for the module's scheme, or a module
    neither quantized nor in the source checkpoint);
  - a parameter left unfilled (a scale the module's scheme needs and the export lacks);
  - a scale disagreement inside a fused group (shards of qkv_proj / gate_up_proj / ... or the
    gate and up of one expert with different per-tensor weight or input scales), and MoE layers
    whose experts or projections do not share one scheme;
  - for ModelOpt exports, what SGLang and TensorRT-LLM add (serving_conformance.py: exclude
    patterns that reach a quantized module, config keys each reads).

Rules:
 F1 models/*.py load_weights stacked_params_mapping / packed_modules_mapping: q/k/v -> qkv_proj
    and gate/up -> gate_up_proj (qwen3_moe.py, mixtral.py, gemma4.py, glm4_moe.py, gpt_oss.py,
    qwen3_next.py); deepseek_v2.py DeepseekV2ForCausalLM.load_weights: q_a_proj +
    kv_a_proj_with_mqa -> fused_qkv_a_proj; qwen3_5.py packed_modules_mapping: in_proj_qkv +
    in_proj_z -> in_proj_qkvz, in_proj_b + in_proj_a -> in_proj_ba. OLMoE runs on the
    transformers backend (registry.py "OlmoeForCausalLM": TransformersMoEForCausalLM): no
    dense fusion.
 F2 layers/fused_moe/layer.py fused_moe_make_expert_params_mapping: experts.E.{gate,up}_proj
    (Mixtral w1/w3) -> w13_*, down_proj (w2) -> w2_*, one FusedMoE per layer.
 M1 layers/quantization/modelopt.py LINEAR_ALGOS / resolve: NVFP4 = KNvfp4Static weight
    (weight U8 [o, i/2], weight_scale F8_E4M3 [o, i/16], weight_scale_2 F32 scalar) + KNvfp4Dynamic
    activation (input_scale F32 scalar); W4A16_NVFP4 = the weight only (_DROP_INPUT_SCALE);
    FP8 = KFp8StaticTensor weight (weight F8_E4M3, weight_scale F32 scalar) and input_scale.
 M2 modelopt.py KNvfp4Static / KNvfp4Dynamic / KFp8StaticTensor process: shards of a fused
    linear with different weight_scale_2 / input_scale are warned about and the max is taken
    (the other shards then decode wrong): a disagreement.
 M3 modelopt.py ModelOptNvFp4FusedMoE.process_weights_after_loading: w13_weight_scale_2[:, 0]
    (gate) must equal [:, 1] (up); ModelOptFp8MoEMethod likewise keeps one w13 scale.
 M4 modelopt.py ModelOptQuantConfigBase.is_layer_excluded / apply_vllm_mapper: exclude_modules
    are exact names, `PATH*` (PATH and PATH.*) or fnmatch wildcards; quant_utils.py
    is_layer_skipped raises when the shards of a fused linear are partly excluded.
 C1 layers/quantization/compressed_tensors/compressed_tensors.py get_scheme_dict: a module's
    scheme is the first config group whose targets match it (class name Linear, exact name,
    or `re:` full regex match), unless `ignore` names it.
 C2 compressed-tensors schemes' create_weights: nvfp4 weight_packed U8 [o, i/2], weight_scale
    F8_E4M3 [o, i/16], weight_global_scale F32 [1] (+ input_global_scale [1] with activations);
    pack-quantized int weight_packed I32 [o, i*bits/32], weight_scale [o, i/g], weight_shape
    I64 [2] (+ weight_zero_point when asymmetric); mxfp4 weight_packed U8 [o, i/2],
    weight_scale U8 [o, i/32]; fp8 weight F8_E4M3, weight_scale [1] or [o, 1] (+ input_scale).
 C3 compressed_tensors_moe/compressed_tensors_moe.py get_moe_method: the MoE scheme is read
    from `<layer>.experts.0.{gate,up,down}_proj` and all three must agree; every expert
    then gets it.

usage (library): check(export_dir, source_dir, family) -> list of problem strings.
usage (ctest):   vllm_conformance.py MOEQ_BINARY TINY_DIR WORK_DIR
"""
import fnmatch
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from safetensors import safe_open
from serving_conformance import SGLANG_EXTRA_FUSED, check_modelopt
from tiny_models import FAMILIES, TINY

# F1: shard suffix -> fused vLLM linear, per family: tiny_models.py (vllm_fused); with the
# fusion SGLang adds (serving_conformance.py S3), as scales must agree for both
FAMILY_FUSED = {fam: dict(TINY[fam]["vllm_fused"], **SGLANG_EXTRA_FUSED.get(fam, {})) for fam in FAMILIES}
EXPERT = re.compile(r"^(?P<moe>.*\.experts)\.(?P<e>\d+)\.(?P<proj>gate_proj|up_proj|down_proj|w1|w2|w3)$")


def headers(d):
    """name -> (dtype string as torch names it, shape) for every tensor of every file in d."""
    out = {}
    for f in sorted(Path(d).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as h:
            for k in h.keys():
                s = h.get_slice(k)
                out[k] = (norm_dtype(s.get_dtype()), list(s.get_shape()))
    return out


def norm_dtype(dt):
    return {"U8": "uint8", "F8_E4M3": "float8_e4m3fn", "F32": "float32", "I32": "int32", "I64": "int64", "BF16": "bfloat16",
            "F16": "float16"}.get(dt, dt)


# ---- schemes: (name, {suffix: (dtype or None, shape function of (out, in) or None)})
def modelopt_scheme(algo):
    """M1."""
    if algo in ("NVFP4", "W4A16_NVFP4"):
        p = {"weight": ("uint8", lambda o, i: [o, i // 2]), "weight_scale": ("float8_e4m3fn", lambda o, i: [o, i // 16]),
             "weight_scale_2": ("float32", lambda o, i: [])}
        if algo == "NVFP4":
            p["input_scale"] = ("float32", lambda o, i: [])
        return algo, p
    if algo == "FP8":
        return algo, {"weight": ("float8_e4m3fn", lambda o, i: [o, i]), "weight_scale": ("float32", lambda o, i: []),
                      "input_scale": ("float32", lambda o, i: [])}
    raise ValueError(f"quant_algo {algo} not in vLLM 0.34's LINEAR_ALGOS as moeq writes them")


def ct_scheme(group):
    """C2."""
    w, a = group["weights"], group.get("input_activations")
    static_in = isinstance(a, dict) and a.get("dynamic") in (False, "local")
    key = f"{w['type']}{w['num_bits']}/{w.get('strategy')}/{w.get('group_size')}/{w.get('symmetric')}/{bool(a)}"
    if w["type"] == "float" and w["num_bits"] == 4 and w.get("strategy") == "tensor_group":
        p = {"weight_packed": ("uint8", lambda o, i: [o, i // 2]), "weight_scale": ("float8_e4m3fn", lambda o, i: [o, i // 16]),
             "weight_global_scale": ("float32", lambda o, i: [1])}
        if static_in:
            p["input_global_scale"] = ("float32", lambda o, i: [1])
    elif w["type"] == "float" and w["num_bits"] == 4:
        p = {"weight_packed": ("uint8", lambda o, i: [o, i // 2]), "weight_scale": ("uint8", lambda o, i: [o, i // 32])}
    elif w["type"] == "int":
        bits, g = w["num_bits"], w["group_size"]
        p = {"weight_packed": ("int32", lambda o, i: [o, i * bits // 32]), "weight_scale": (None, lambda o, i: [o, i // g]),
             "weight_shape": ("int64", lambda o, i: [2])}
        if not w.get("symmetric", True):
            p["weight_zero_point"] = ("int32", None)
    elif w["type"] == "float" and w["num_bits"] == 8:
        ch = w.get("strategy") == "channel"
        p = {"weight": ("float8_e4m3fn", lambda o, i: [o, i]), "weight_scale": ("float32", (lambda o, i: [o, 1]) if ch else (lambda o, i: [1]))}
        if static_in:
            p["input_scale"] = ("float32", lambda o, i: [1])
    else:
        raise ValueError(f"config group weights {w} have no vLLM compressed-tensors scheme moeq knows")
    return key, p


def out_in(suffixes, tensors, m):
    """The linear's [out, in] from its stored weight (packed formats: from the packing)."""
    if "weight_shape" in suffixes:
        return None  # int: read from the weight_shape values is not possible from headers; shape-check rows only
    for s in ("weight_packed", "weight"):
        if s in suffixes:
            dt, sh = tensors[f"{m}.{s}"]
            if len(sh) != 2:
                return None
            return sh[0], sh[1] * (2 if dt == "uint8" else 1)  # U8 holds two E2M1 codes
    return None


class ModelOpt:
    def __init__(self, qc):
        self.algo = qc["quant_algo"]
        self.layers = {k: v["quant_algo"] for k, v in qc.get("quantized_layers", {}).items()}
        self.exclude = qc.get("exclude_modules", qc.get("ignore", []))

    def excluded(self, m):  # M4
        for e in self.exclude:
            if e == m or (e.endswith("*") and not e.endswith(".*") and (m == e[:-1] or m.startswith(e[:-1] + "."))) or fnmatch.fnmatch(m, e):
                return True
        return False

    def scheme(self, m):
        if self.excluded(m):
            return None
        return modelopt_scheme(self.layers.get(m, "") if self.algo == "MIXED_PRECISION" else self.algo)


class CompressedTensors:
    def __init__(self, qc):
        self.groups = qc["config_groups"]
        self.ignore = qc.get("ignore", [])

    @staticmethod
    def _match(t, m):
        # class target Linear: vLLM's LinearBase modules, not VocabParallelEmbedding (embed_tokens)
        linear_class = t == "Linear" and not m.endswith(("embed_tokens", "embedding"))
        return linear_class or t == m or (t.startswith("re:") and re.fullmatch(t[3:], m) is not None)

    def scheme(self, m):  # C1
        if any(self._match(t, m) for t in self.ignore if t != "Linear"):
            return None
        for g in self.groups.values():
            if any(self._match(t, m) for t in g["targets"]):
                return ct_scheme(g)
        return None


def check(export_dir, source_dir, family):
    problems = []
    cfg = json.loads(Path(export_dir, "config.json").read_text())["quantization_config"]
    q = ModelOpt(cfg) if cfg["quant_method"] == "modelopt" else CompressedTensors(cfg)
    tensors, source = headers(export_dir), headers(source_dir)
    by_module = defaultdict(set)
    for k in tensors:
        m, s = k.rsplit(".", 1)
        by_module[m].add(s)
    scheme_of, scalars = {}, {}
    for m, suffixes in sorted(by_module.items()):
        # a linear: packed, or a 2D weight (norms are 1D, conv1d 3D; embeddings sit in ignore / exclude_modules)
        linear = "weight_packed" in suffixes or ("weight" in suffixes and len(tensors[f"{m}.weight"][1]) == 2)
        sch = q.scheme(m) if linear else None
        if sch is None:  # unquantized: vLLM loads these as for the source model
            for s in suffixes:
                k = f"{m}.{s}"
                if k not in source:
                    problems.append(f"{k}: no parameter receives it (module {'excluded' if linear else 'not a linear'}, not in the source)")
                elif source[k] != tensors[k] and not (linear and s == "weight" and tensors[k][1] == source[k][1]):
                    problems.append(f"{k}: {tensors[k]} but the unquantized parameter is {source[k]}")
            scheme_of[m] = "unquantized" if linear else None
            continue
        name, params = sch
        scheme_of[m] = name
        extra = suffixes - set(params) - {"bias"}
        for s in sorted(extra):
            problems.append(f"{m}.{s}: no parameter of scheme {name} receives it")
        dims = out_in(suffixes, tensors, m)
        for s, (dt, shape) in params.items():
            k = f"{m}.{s}"
            if s not in suffixes:
                problems.append(f"{k}: parameter of scheme {name} left unfilled")
                continue
            got_dt, got_sh = tensors[k]
            if dt and got_dt != dt:
                problems.append(f"{k}: dtype {got_dt}, vLLM creates {dt}")
            if shape and dims and got_sh != shape(*dims):
                problems.append(f"{k}: shape {got_sh}, vLLM creates {shape(*dims)}")
        for s in ("weight_scale_2", "weight_global_scale", "input_scale", "input_global_scale"):
            if s in suffixes and f"{m}.{s}" in tensors:
                scalars[(m, s)] = f"{m}.{s}"
        if "weight_scale" in suffixes and "weight_scale_2" not in suffixes and tensors[f"{m}.weight_scale"][1] in ([], [1]):
            scalars[(m, "weight_scale")] = f"{m}.weight_scale"
    values = scalar_values(export_dir, set(scalars.values()))
    fused = FAMILY_FUSED[family]
    if isinstance(q, ModelOpt):  # SGLang and TensorRT-LLM on the same layout (serving_conformance.py)
        problems += check_modelopt(export_dir, family, [m for m, sch in scheme_of.items() if sch not in (None, "unquantized")],
                                   fused)
    groups = defaultdict(list)  # (fused linear or expert w13) -> member modules
    for m in scheme_of:
        if scheme_of[m] is None or "." not in m:
            continue
        e = EXPERT.match(m)
        base, proj = m.rsplit(".", 1)
        if e and e["proj"] in ("gate_proj", "up_proj", "w1", "w3"):
            groups[f"{e['moe']}.{e['e']}.w13"].append(m)  # M3
        elif not e and proj in fused:
            groups[f"{base}.{fused[proj]}"].append(m)  # F1 / M2
    for g, members in sorted(groups.items()):
        schemes = {scheme_of[m] for m in members}
        if len(schemes) > 1:  # M4 (is_layer_skipped) / C3
            problems.append(f"{g}: shards {members} have schemes {sorted(schemes)}: vLLM builds one linear")
            continue
        for s in ("weight_scale_2", "weight_global_scale", "input_scale", "input_global_scale", "weight_scale"):
            vals = {values[scalars[(m, s)]] for m in members if (m, s) in scalars}
            if len(vals) > 1:
                problems.append(f"{g}: {s} differs across {members} ({sorted(vals)}): vLLM keeps the max (M2/M3)")
    moe = defaultdict(set)  # F2 / C3: one scheme per fused MoE
    for m, sch in scheme_of.items():
        e = EXPERT.match(m)
        if e and sch is not None:
            moe[e["moe"]].add(sch)
    for layer, schemes in sorted(moe.items()):
        if len(schemes) > 1:
            problems.append(f"{layer}: experts with schemes {sorted(schemes)}: vLLM builds one FusedMoE with one scheme")
    return problems


def scalar_values(d, names):
    out = {}
    for f in sorted(Path(d).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as h:
            for k in h.keys():
                if k in names:
                    out[k] = h.get_tensor(k).float().reshape(-1)[0].item()
    return out


RECIPES = {  # name -> (rules, needs calibration); all sites but routers / embeddings / lm_head where "*"
    "nvfp4_experts_only": ("  - roles: [experts]\n    format: nvfp4\n    input_quant: true\n", True),
    "nvfp4_all": ('  - sites: "*"\n    format: nvfp4\n    input_quant: true\n', True),
    "fp8": ('  - sites: "*"\n    format: fp8\n    input_quant: true\n', True),
    "w4a16_int4": ('  - sites: "*"\n    format: int4\n    params: {group_size: 32}\n', False),
    "mxfp4_experts": ("  - roles: [experts]\n    format: mxfp4\n", False),
}


def main():
    moeq, tiny, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    work.mkdir(parents=True, exist_ok=True)
    ids = work / "ids.jsonl"
    ids.write_text("".join(json.dumps({"input_ids": [(7 * i + j) % 200 for j in range(32)]}) + "\n" for i in range(4)))
    failures, checked, refused = [], 0, 0
    for fam in FAMILIES:
        src = tiny / fam / "model"
        calib = work / f"{fam}.h5"
        subprocess.run([moeq, "calibrate", str(src), "--data", str(ids), "-o", str(calib), "--samples", "4", "--seq-len", "32"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for name, (rules, calibrated) in RECIPES.items():
            for export in ("modelopt", "compressed-tensors"):
                recipe = work / f"{fam}-{name}-{export}.yaml"
                recipe.write_text(f"recipe: {name}\nexport: {export}\nrules:\n{rules}")
                out = work / f"{fam}-{name}-{export}"
                cmd = [moeq, "quantize", str(src), "--recipe", str(recipe), "-o", str(out), "--overwrite"]
                r = subprocess.run(cmd + (["--calib", str(calib)] if calibrated else []), capture_output=True, text=True)
                if r.returncode != 0:
                    # refusals are fine when they are the documented ones (docs/consumers.md)
                    msg = (r.stderr.strip().splitlines() or ["?"])[-1]
                    known = ("has no compressed-tensors" in msg or "which ModelOpt checkpoints cannot hold" in msg
                             or "gpt-oss experts written per expert" in msg or "writes int4 weight-only" in msg
                             or "writes mxfp4 weight-only" in msg)
                    refused += 1
                    print(f"{fam:12s} {name:18s} {export:18s} refused: {msg[:160]}")
                    if not known:
                        failures.append(f"{fam} {name} {export}: unexpected failure: {msg}")
                    continue
                problems = check(out, src, fam)
                checked += 1
                print(f"{fam:12s} {name:18s} {export:18s} {len(problems)} problems")
                for p in problems[:5]:
                    print("   ", p)
                failures += [f"{fam} {name} {export}: {p}" for p in problems]
    # the checker can fail: a split scale in a fused group must be caught
    fam, out = "qwen3_moe", work / "qwen3_moe-nvfp4_all-modelopt"
    mutant = work / "mutant"
    subprocess.run(["rm", "-rf", str(mutant)], check=True)
    subprocess.run(["cp", "-r", str(out), str(mutant)], check=True)
    import torch
    from safetensors.torch import load_file, save_file
    f = next(mutant.glob("*.safetensors"))
    t = load_file(str(f))
    t["model.layers.0.self_attn.k_proj.weight_scale_2"] = t["model.layers.0.self_attn.k_proj.weight_scale_2"] * 1.15
    del t["model.layers.1.mlp.experts.3.down_proj.input_scale"]
    t["model.layers.0.mlp.experts.0.gate_proj.stray"] = torch.zeros(1)
    save_file(t, str(f), metadata={"format": "pt"})
    # an exclude pattern that reaches a quantized linear by string prefix (X1), and config.json
    # disagreeing with hf_quant_config.json (T1)
    hf = json.loads((mutant / "hf_quant_config.json").read_text())
    hf["quantization"]["exclude_modules"].append("model.layers.0.self_attn.q*")
    (mutant / "hf_quant_config.json").write_text(json.dumps(hf))
    got = check(mutant, tiny / fam / "model", fam)
    want = ["qkv_proj: weight_scale_2 differs", "down_proj.input_scale: parameter of scheme NVFP4 left unfilled",
            "gate_proj.stray: no parameter", "self_attn.q_proj: quantized, but exclude_modules",
            "excludes it for vLLM, SGLang, TensorRT-LLM (X1)", "exclude list"]
    for w in want:
        if not any(w in p for p in got):
            failures.append(f"mutation check: '{w}' not reported (got {got})")
    print(f"mutation check: {len(got)} problems reported on a broken export")
    print(f"{checked} exports checked, {refused} refused, {len(failures)} failures")
    for x in failures[:20]:
        print("FAIL:", x)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
