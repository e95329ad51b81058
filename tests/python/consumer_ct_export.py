"""compressed-tensors as the consumer of moeq's compressed-tensors exports.

usage: consumer_ct_export.py MOEQ_BINARY WORK_DIR   (a ctest test; exit status 1 on failure)

For int4 (sym, asym), int8, nvfp4 (weight-only, both expert layouts), mxfp4, fp8 (tensor,
channel) and a mixed recipe, on the demo checkpoint (`moeq make-demo`):
 1. safetensors opens every file of the export (sharded for one case);
 2. config.json's quantization_config equals what compressed-tensors itself writes
    (ModelCompressor.update_config) for the same schemes, targets and ignore list, and each
    group's format is the one compressed-tensors infers for its scheme;
 3. compressed-tensors' compressor, given the source weight and our scales, produces our
    tensors: same names, dtypes, shapes and bytes (nvfp4: see NVFP4_NOTE);
 4. compressed-tensors' model-free dequantizer (convert_checkpoint with
    CompressedTensorsDequantizer: every shard, every quantized module, residual qparams are
    an error) decodes every module to moeq's own dequantization (`--dump-dequant`),
    exactly (bit for bit, in the dtype compressed-tensors decodes in: bf16 for the fp4
    formats, the scale's dtype for the others), except nvfp4 (NVFP4_NOTE);
 5. an export compressed-tensors writes itself for the same schemes (its own qparams, as
    llm-compressor computes them) passes `moeq verify --source`.
NVFP4_NOTE: compressed-tensors stores the reciprocal of ModelOpt's weight_scale_2
(weight_global_scale = 1 / weight_scale_2, rounded to fp32) and divides the block scale by
it where moeq multiplies: the two products can differ by an fp32 ulp, which flips the bf16
rounding of a few decoded values by one bf16 ulp, and (compressing) the E2M1 rounding of
values within an ulp of a rounding boundary. And compressed-tensors decodes the E2M1 code
8 (-0) to -0.0 where moeq, like ModelOpt, gives +0.0. All are counted, printed and bounded.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
import torch  # noqa: E402
import compressed_tensors  # noqa: E402
from compressed_tensors.compressors import BaseCompressor, ModelCompressor  # noqa: E402
from compressed_tensors.compressors.format import infer_module_format  # noqa: E402
from compressed_tensors.compressors.nvfp4.helpers import unpack_fp4_from_uint8  # noqa: E402
from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32  # noqa: E402
from compressed_tensors.entrypoints.convert import convert_checkpoint  # noqa: E402
from compressed_tensors.entrypoints.convert.converters.ct_dequantizer import CompressedTensorsDequantizer  # noqa: E402
from compressed_tensors.quantization import QuantizationArgs, QuantizationConfig, QuantizationScheme  # noqa: E402
from compressed_tensors.quantization.quant_scheme import PRESET_SCHEMES  # noqa: E402
from compressed_tensors.quantization.utils.helpers import calculate_qparams, generate_gparam  # noqa: E402
from loguru import logger  # noqa: E402
from consumer_util import check, failures, load_dir  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

logger.remove()
logger.add(sys.stderr, level="ERROR")

FP8_TENSOR_W = dict(weights=QuantizationArgs(num_bits=8, type="float", strategy="tensor", symmetric=True, dynamic=False))
FP8_CHANNEL_W = dict(weights=PRESET_SCHEMES["FP8_DYNAMIC"]["weights"])
EXPERTS_ONLY = "  - roles: [attention, dense_mlp, shared_experts, other]\n    enable: false\n"


def rule(roles, fmt, params=""):
    return f"  - {roles}\n    format: {fmt}\n" + (f"    params: {{{params}}}\n" if params else "")


# name, layout, recipe rules, the presets compressed-tensors would write (paired with our groups by format), extra args
CASES = [
    ("int4_sym", "per_expert", rule('sites: "*"', "int4", "group_size: 128, symmetric: true"), [PRESET_SCHEMES["W4A16"]], ["--max-shard-gb", "0.001"]),
    ("int4_asym", "per_expert", rule('sites: "*"', "int4", "group_size: 128, symmetric: false"), [PRESET_SCHEMES["W4A16_ASYM"]], []),
    ("int8", "per_expert", rule('sites: "*"', "int8"), [PRESET_SCHEMES["W8A16"]], []),
    ("nvfp4", "per_expert", rule("roles: [experts]", "nvfp4") + EXPERTS_ONLY, [PRESET_SCHEMES["NVFP4A16"]], []),
    ("nvfp4_fused", "fused", rule("roles: [experts]", "nvfp4") + EXPERTS_ONLY, [PRESET_SCHEMES["NVFP4A16"]], []),
    ("mxfp4", "per_expert", rule("roles: [experts]", "mxfp4") + EXPERTS_ONLY, [PRESET_SCHEMES["MXFP4A16"]], []),
    ("fp8_tensor", "per_expert", rule("roles: [experts]", "fp8") + EXPERTS_ONLY, [FP8_TENSOR_W], []),
    ("fp8_channel", "per_expert", rule("roles: [experts]", "fp8", "granularity: channel") + EXPERTS_ONLY, [FP8_CHANNEL_W], []),
    ("mixed", "per_expert", rule("roles: [experts]", "nvfp4") + rule("roles: [attention]", "int4", "group_size: 128, symmetric: false"),
     [PRESET_SCHEMES["NVFP4A16"], PRESET_SCHEMES["W4A16_ASYM"]], []),
]
LAYERS, EXPERTS = 2, 8  # moeq make-demo --layers 2 --experts 8
N_EXPERT_MODULES, N_ATTN_MODULES = LAYERS * EXPERTS * 3, LAYERS * 4  # gate/up/down; q/k/v/o

def expected_config(ours, presets):
    """What compressed-tensors writes for the same schemes, targets and ignore list (each
    group paired with the expected preset of the format compressed-tensors infers for it)."""
    groups = {}
    for name, g in ours["config_groups"].items():
        for p in presets:
            s = QuantizationScheme(targets=g["targets"], **p)
            s.format = infer_module_format(torch.nn.Linear, s).value
            if s.format == g.get("format"):
                groups[name] = s
        if name not in groups:
            return {"error": f"group {name}: format {g.get('format')} is none of the expected presets'"}
    formats = {s.format for s in groups.values()}
    cfg = QuantizationConfig(config_groups=groups, ignore=ours["ignore"], quantization_status="compressed",
                             format=formats.pop() if len(formats) == 1 else "mixed-precision")
    with tempfile.TemporaryDirectory() as d:
        Path(d, "config.json").write_text("{}")
        ModelCompressor(quantization_config=cfg).update_config(d)
        return json.loads(Path(d, "config.json").read_text())["quantization_config"]


def compress_like_ct(scheme, src_w, ours):
    """compressed-tensors' own compression of the source weight with our (decoded) scales."""
    sd = {"weight": src_w}
    fmt = scheme.format
    if fmt == "pack-quantized":
        sd["weight_scale"] = ours["weight_scale"]
        if "weight_zero_point" in ours:
            shape = torch.Size([src_w.shape[0], ours["weight_scale"].shape[1]])
            sd["weight_zero_point"] = unpack_from_int32(ours["weight_zero_point"], scheme.weights.num_bits, shape, packed_dim=0)
    elif fmt == "nvfp4-pack-quantized":  # the module holds fp8-valued scales in the weight dtype
        sd["weight_scale"] = ours["weight_scale"].to(src_w.dtype)
        sd["weight_global_scale"] = ours["weight_global_scale"]
    elif fmt == "mxfp4-pack-quantized":  # and MX scales as powers of two
        sd["weight_scale"] = (2.0 ** (ours["weight_scale"].to(torch.int32) - 127).float()).to(src_w.dtype)
    else:
        sd["weight_scale"] = ours["weight_scale"]
    return BaseCompressor.get_value_from_registry(fmt).compress(sd, scheme)


def nvfp4_tie_flips(what, w, ours, theirs_packed):
    """NVFP4_NOTE: codes may differ only where the value sits on a rounding midpoint (within
    a few fp32 ulps, as seen through compressed-tensors' divisor scale / global_scale), and
    then only to the neighbouring magnitude. Returns the number of such codes."""
    rows, cols = w.shape
    a = unpack_fp4_from_uint8(theirs_packed, rows, cols, torch.float32)
    b = unpack_fp4_from_uint8(ours["weight_packed"], rows, cols, torch.float32)
    idx = (a != b).nonzero()
    scale = ours["weight_scale"].float().repeat_interleave(16, 1) / ours["weight_global_scale"]
    v = (w.float() / scale)[idx[:, 0], idx[:, 1]].abs()
    ga, gb = a[idx[:, 0], idx[:, 1]].abs(), b[idx[:, 0], idx[:, 1]].abs()
    mid = (ga + gb) / 2
    step = {0.0: 0.5, 0.5: 0.5, 1.0: 0.5, 1.5: 0.5, 2.0: 1.0, 3.0: 1.0, 4.0: 2.0, 6.0: 2.0}
    adjacent = all(abs(x - y) <= max(step[x], step[y]) for x, y in zip(ga.tolist(), gb.tolist()))
    on_midpoint = ((v - mid).abs() <= 4e-7 * mid).all().item()
    check(adjacent and on_midpoint, f"{what}: {len(idx)} codes differ from compressed-tensors' and not only at rounding midpoints")
    return len(idx)


def group_of(module, cfg, schemes):
    for name, g in cfg["config_groups"].items():
        for t in g["targets"]:
            if t == "Linear" or t == module or (t.startswith("re:") and re.match(t[3:], module)):
                return schemes[name]
    return None


def sqnr(ref, x):
    return 10 * torch.log10(ref.pow(2).sum() / (ref - x).pow(2).sum().clamp_min(1e-30)).item()


def run_case(moeq, work, name, layout, rules, schemes, extra):
    src_dir = work / "demo" / ("qwen3_moe_per_expert" if layout == "per_expert" else "qwen3_moe_fused")
    recipe, out, ref_dir, deq_dir = work / f"{name}.yaml", work / name, work / f"{name}.ref", work / f"{name}.ct"
    recipe.write_text(f"recipe: ct_{name}\nexport: compressed-tensors\nweight_only: true\nrules:\n{rules}")
    subprocess.run([moeq, "quantize", str(src_dir), "--recipe", str(recipe), "-o", str(out), "--overwrite",
                    "--dump-dequant", str(ref_dir), *extra], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    files = sorted(p.name for p in out.glob("*.safetensors"))
    tensors, ref, src = load_dir(out), load_dir(ref_dir), load_dir(src_dir)
    if len(files) > 1:
        index = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
        check(set(index) == set(tensors) and set(index.values()) == set(files), f"{name}: index does not match the shards")
    cfg = json.loads((out / "config.json").read_text())["quantization_config"]
    theirs = expected_config(cfg, schemes)
    check(cfg == theirs, f"{name}: quantization_config differs from compressed-tensors':\n  ours   {cfg}\n  theirs {theirs}")
    ct_cfg = QuantizationConfig.model_validate(cfg)
    for g in ct_cfg.config_groups.values():
        g.format = infer_module_format(torch.nn.Linear, g).value
    modules = sorted(k[: -len(".weight")] for k in ref)
    n_expected = {"int4_sym": N_EXPERT_MODULES + N_ATTN_MODULES, "int4_asym": N_EXPERT_MODULES + N_ATTN_MODULES,
                  "int8": N_EXPERT_MODULES + N_ATTN_MODULES, "mixed": N_EXPERT_MODULES + N_ATTN_MODULES}.get(name, N_EXPERT_MODULES)
    check(len(modules) == n_expected, f"{name}: {len(modules)} quantized modules, expected {n_expected}")
    unquantized = {k[: -len(".weight")] for k in src if k.endswith(".weight") and "norm" not in k} - set(modules)
    check(unquantized and set(cfg["ignore"]) == unquantized, f"{name}: ignore {sorted(cfg['ignore'])} != unquantized {sorted(unquantized)}")

    # 3. compressed-tensors compressing the same weights with our scales
    byte_diff = n_codes = ties = 0
    if layout == "per_expert":
        for m in modules:
            scheme = group_of(m, cfg, ct_cfg.config_groups)
            ours = {k[len(m) + 1:]: v for k, v in tensors.items() if k.startswith(m + ".") and "." not in k[len(m) + 1:]}
            theirs = compress_like_ct(scheme, src[m + ".weight"], ours)
            if not check(set(theirs) == set(ours), f"{name}: {m}: tensors {sorted(ours)} != compressed-tensors' {sorted(theirs)}"):
                continue
            for k, t in theirs.items():
                o = ours[k]
                if not check(t.dtype == o.dtype and t.shape == o.shape, f"{name}: {m}.{k}: {o.dtype} {tuple(o.shape)} != compressed-tensors' {t.dtype} {tuple(t.shape)}"):
                    continue
                diff = (t.flatten().clone().view(torch.uint8) != o.flatten().clone().view(torch.uint8)).sum().item()
                if k in ("weight_packed", "weight"):
                    n_codes += o.numel()
                    byte_diff += diff
                if diff and k == "weight_packed" and "weight_global_scale" in ours:
                    ties += nvfp4_tie_flips(f"{name}: {m}", src[m + ".weight"], ours, t)
                else:
                    check(diff == 0, f"{name}: {m}.{k}: {diff} bytes differ from compressed-tensors'")

    # 4. compressed-tensors' model-free dequantizer over the whole export
    dequantizer = CompressedTensorsDequantizer(str(out), dtype=torch.float32)
    if any(g["format"] in ("naive-quantized", "float-quantized") for g in cfg["config_groups"].values()):
        # convert_checkpoint's dependency map takes target `Linear` to make every `*.weight`
        # (norms included) depend on a weight_scale and refuses llm-compressor's own FP8
        # checkpoints too; the dequantizer itself (which skips norms) reads the state dict.
        deq = dequantizer.validate(dict(tensors))
    else:
        convert_checkpoint(str(out), str(deq_dir), dequantizer, max_workers=1, device="cpu")
        deq = load_dir(deq_dir)
    exact = one_ulp = zero_sign = 0
    worst_db = 1e9
    for m in modules:
        k = m + ".weight"
        if not check(k in deq and deq[k].dtype == torch.float32, f"{name}: {k} not decompressed by compressed-tensors"):
            continue
        # the dtype compressed-tensors decodes in: bf16 for the fp4 formats, the scale's for the others
        dt = torch.bfloat16 if m + ".weight_global_scale" in tensors or tensors.get(m + ".weight_scale").dtype == torch.uint8 \
            else tensors[m + ".weight_scale"].dtype
        want, got = ref[k].to(dt), deq[k].to(dt)
        bits = torch.int16 if dt.itemsize == 2 else torch.int32
        if torch.equal(want.float(), deq[k]):
            exact += 1
            # equal values, bits may differ only in the sign of zero (NVFP4_NOTE)
            zero_sign += (want.view(bits) != got.view(bits)).sum().item()
            check(((want.view(bits) != got.view(bits)) <= (want == 0)).all().item(), f"{name}: {k}: equal values, different bits")
        elif m + ".weight_global_scale" in tensors:  # NVFP4_NOTE: at most one bf16 ulp, same sign
            d = torch.where(want == got, 0, (want.view(torch.int16).int() - got.view(torch.int16).int()).abs())
            check(d.max().item() <= 1, f"{name}: {k}: decoded values differ by {d.max().item()} bf16 ulps")
            one_ulp += (d == 1).sum().item()
        else:
            check(False, f"{name}: {k}: compressed-tensors decodes to other values than moeq ({(want.float() != deq[k]).sum().item()} differ)")
        worst_db = min(worst_db, sqnr(src[k].float(), deq[k]) if k in src else worst_db)
    for k, v in deq.items():  # everything else passes through unchanged
        if k not in ref:
            check(k in tensors and torch.equal(v, tensors[k]), f"{name}: {k} changed or appeared in the dequantized checkpoint")
    # 5. compressed-tensors' own export of the same weights, read by moeq verify
    native = ct_native_export(moeq, work, name, src_dir, src, cfg, ct_cfg, schemes) if layout == "per_expert" else "-"
    print(f"{name:12s} files {len(files)}, groups {[g['format'] for g in cfg['config_groups'].values()]}, modules {len(modules)}: "
          f"{exact} equal to moeq's ({zero_sign} zeros of the other sign), {one_ulp} values 1 bf16 ulp off; compress: {byte_diff}/{n_codes} weight bytes differ ({ties} midpoint codes); "
          + (f"worst SQNR vs source {worst_db:.2f} dB" if worst_db < 1e9 else "(fused: source not compared)")
          + f"; moeq verify of compressed-tensors' own export: {native}")
    return tensors, ref


def ct_native_export(moeq, work, name, src_dir, src, cfg, ct_cfg, presets):
    """Step 5: compressed-tensors computes the qparams (calculate_qparams / generate_gparam on
    each weight's min and max, gate and up sharing one global scale as llm-compressor fuses
    them), compresses, and writes; moeq verify must read that export clean."""
    out = work / f"{name}.native"
    out.mkdir(exist_ok=True)
    sd = {}
    for k, w in src.items():
        m = k[: -len(".weight")]
        scheme = group_of(m, cfg, ct_cfg.config_groups) if k.endswith(".weight") and "norm" not in m and m not in cfg["ignore"] else None
        if scheme is None:
            sd[k] = w
            continue
        args, gs = scheme.weights, None
        if args.strategy == "tensor_group":
            partner = re.sub(r"(gate|up)_proj$", lambda x: "up_proj" if x.group(1) == "gate" else "gate_proj", m)
            both = torch.cat([w.flatten(), src[partner + ".weight"].flatten()])
            gs = generate_gparam(both.min(), both.max())
        if args.strategy in ("group", "tensor_group"):
            g = w.reshape(w.shape[0], -1, args.group_size)
            mn, mx = g.amin(-1), g.amax(-1)
        elif args.strategy == "channel":
            mn, mx = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
        else:
            mn, mx = w.min(), w.max()
        scale, zp = calculate_qparams(mn, mx, args, global_scale=gs)
        local = {"weight": w, "weight_scale": scale.to(w.dtype), "weight_zero_point": zp}
        if gs is not None:
            local["weight_global_scale"] = gs
        for p, t in BaseCompressor.get_value_from_registry(scheme.format).compress(local, scheme).items():
            sd[f"{m}.{p}"] = t
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((src_dir / "config.json").read_text())
    config["quantization_config"] = expected_config(cfg, presets)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    r = subprocess.run([moeq, "verify", str(out), "--source", str(src_dir)], capture_output=True, text=True)
    check(r.returncode == 0, f"{name}: moeq verify rejects compressed-tensors' own export:\n{r.stdout}{r.stderr}")
    return r.stdout.strip().splitlines()[-1] if r.stdout else r.stderr


def mutation_check(tensors, ref):
    """The comparison can fail: ModelOpt's weight_scale_2 in place of its reciprocal must not decode to moeq's values."""
    m = next(k[: -len(".weight_global_scale")] for k in tensors if k.endswith(".weight_global_scale"))
    sd = {p: tensors[f"{m}.{p}"] for p in ("weight_packed", "weight_scale", "weight_global_scale")}
    sd["weight_global_scale"] = 1 / sd["weight_global_scale"]
    scheme = QuantizationScheme(targets=["Linear"], **PRESET_SCHEMES["NVFP4A16"])
    bad = BaseCompressor.get_value_from_registry("nvfp4-pack-quantized").decompress(sd, scheme)["weight"]
    if check(not torch.equal(bad.float(), ref[m + ".weight"].to(torch.bfloat16).float()), "mutation check: an inverted global scale went unnoticed"):
        print(f"mutation check: {m} decoded with weight_scale_2 as the global scale differs from moeq's values, as it must")


def main():
    moeq, work = sys.argv[1], Path(sys.argv[2])
    shutil.rmtree(work, ignore_errors=True)  # fresh outputs each run
    work.mkdir(parents=True)
    print(f"compressed-tensors {compressed_tensors.__version__}, torch {torch.__version__}")
    subprocess.run([moeq, "make-demo", str(work / "demo"), "--overwrite", "--layers", str(LAYERS), "--experts", str(EXPERTS)],
                   check=True, stdout=subprocess.DEVNULL)
    for case in CASES:
        tensors, ref = run_case(moeq, work, *case)
        if case[0] == "nvfp4":
            mutation_check(tensors, ref)
    print(f"{len(CASES)} cases, {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
