"""bitsandbytes and transformers as the consumers of moeq's bitsandbytes 4-bit exports.

usage: consumer_bnb_export.py MOEQ_BINARY WORK_DIR TINY_DIR   (a ctest test; exit status 1 on failure)

On the demo checkpoint (`moeq make-demo`, both expert layouts: nf4 with double quant, fp4
plain with block 128, nf4 with block 32) and on every tiny transformers checkpoint of
TINY_DIR (recipe nf4_all):
 1. safetensors opens every file of the export;
 2. config.json's quantization_config is BitsAndBytesConfig(...).to_dict() for the same
    quant type, double quant, compute dtype and skip list, and the skip list names exactly
    the modules left unquantized (norms aside);
 3. each quantized module's tensors have the names, dtypes and shapes of
    bitsandbytes' own QuantState.as_dict(packed=True) for a weight of that shape and dtype
    (quantize_4bit on CPU), and its quant_state JSON the same keys and values (the nested
    offset aside, which depends on the weights);
 4. bitsandbytes' dequantize_4bit (CPU), with the QuantState rebuilt from the saved tensors
    as transformers does (QuantState.from_dict), decodes every quantized weight to moeq's
    own dequantization (`--dump-dequant`) exactly: bit for bit in float32, and in the
    quant state's dtype (bf16);
 5. transformers: every expert of the 8 families is a fused 3D nn.Parameter in
    transformers 5.17 (no nn.Linear), which bitsandbytes' integration does not quantize, so
    transformers cannot load exports with 4-bit experts. For the linears it does quantize,
    an export of tiny qwen3_moe with NF4 attention (experts kept) is checked against
    transformers' own: from_pretrained loads it (every q/k/v/o a Linear4bit decoding to
    moeq's values), its logits equal the source model's with moeq's dequantized weights
    substituted, and transformers' own load_in_4bit + save_pretrained of the source has the
    same tensor names, dtypes and shapes and the same quantization_config (skip list aside).
A mutation check shows step 4 can fail: another expert's quant_state (nested offset) decodes
differently.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
# Eager bitsandbytes: its dequantize helpers are wrapped in torch.compile, which costs
# minutes here (one compile per shape) and computes the same values.
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
import torch  # noqa: E402
import bitsandbytes as bnb  # noqa: E402
import bitsandbytes.functional as F  # noqa: E402
import bnb_cpu_pin  # noqa: E402,F401  one CPU decoding path on every host (AVX2, AVX-512)
import transformers  # noqa: E402
from consumer_util import check, failures, load_dir  # noqa: E402
from transformers import AutoModelForCausalLM, BitsAndBytesConfig  # noqa: E402
from tiny_models import FAMILIES  # noqa: E402

transformers.logging.set_verbosity_error()

QS_PREFIX = "quant_state.bitsandbytes__"
ROOT = Path(__file__).resolve().parents[2]


def rules(fmt, params, experts_only=False):
    r = f"  - sites: \"*\"\n    format: {fmt}\n    params: {{{params}}}\n"
    return r + ("  - roles: [attention, dense_mlp, shared_experts, other]\n    enable: false\n" if experts_only else "")


# name, demo layout, recipe rules
DEMO_CASES = [
    ("nf4_dq", "per_expert", rules("nf4", "block_size: 64, double_quant: true")),
    ("nf4_dq_fused", "fused", rules("nf4", "block_size: 64, double_quant: true", experts_only=True)),
    ("fp4_b128", "per_expert", rules("fp4", "block_size: 128")),
    ("nf4_b32_fused", "fused", rules("nf4", "block_size: 32")),
]
ATTN_NF4 = ("  - roles: [attention]\n    format: nf4\n    params: {double_quant: true}\n"
            "  - roles: [experts, dense_mlp, shared_experts, other]\n    enable: false\n")

def quantize(moeq, src, recipe_text, out, dump):
    recipe = out.with_suffix(".yaml")
    recipe.write_text(recipe_text)
    subprocess.run([moeq, "quantize", str(src), "--recipe", str(recipe), "-o", str(out), "--overwrite",
                    "--dump-dequant", str(dump)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def expected_config(ours):
    """What transformers writes for the same settings and skip list."""
    c = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=ours["bnb_4bit_quant_type"],
                           bnb_4bit_use_double_quant=ours["bnb_4bit_use_double_quant"],
                           bnb_4bit_compute_dtype=getattr(torch, ours["bnb_4bit_compute_dtype"]),
                           llm_int8_skip_modules=ours["llm_int8_skip_modules"])
    return json.loads(c.to_json_string(use_diff=False))


def quant_state_of(tensors, module):
    """The QuantState transformers rebuilds for `module` (Bnb4bitDeserialize ->
    Params4bit.from_prequantized -> QuantState.from_dict) from the saved tensors."""
    prefix = module + ".weight."
    stats = {k[len(module) + 1:]: v for k, v in tensors.items() if k.startswith(prefix)}
    return F.QuantState.from_dict(stats, device=torch.device("cpu"))


def bit_diffs(a, b):
    """Values whose bits differ (NaN payloads and signed zeros count: `a != b` would miss the
    zeros and count every NaN)."""
    ints = {4: torch.int32, 2: torch.int16}[a.element_size()]
    return (a.view(ints) != b.view(ints)).sum().item()


def check_export(name, out, ref, src_weights):
    """Steps 1-4 on one export; returns (tensors, modules)."""
    tensors = load_dir(out)
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    check(qc == expected_config(qc), f"{name}: quantization_config differs from BitsAndBytesConfig's:\n  ours   {qc}\n  theirs {expected_config(qc)}")
    modules = sorted(k[: -len(".weight.") - len(QS_PREFIX) - 3] for k in tensors if QS_PREFIX in k)
    check(sorted(k[: -len(".weight")] for k in ref) == modules, f"{name}: quantized modules differ from moeq's dump")
    kept = {k[: -len(".weight")] for k in src_weights if k.endswith(".weight") and "norm" not in k
            and src_weights[k].dim() == 2} - set(modules)
    skip = {s[:-1].replace("\\.", ".") if s.endswith("$") else s for s in qc["llm_int8_skip_modules"]}
    check(skip == kept, f"{name}: llm_int8_skip_modules {sorted(skip)} != unquantized 2D weights {sorted(kept)}")
    exact = 0
    for m in modules:
        st = json.loads(bytes(tensors[next(k for k in tensors if k.startswith(m + ".weight." + QS_PREFIX))].tolist()))
        # 3. bitsandbytes' own layout for a weight of this shape and dtype
        w = torch.randn(st["shape"]).to(getattr(torch, st["dtype"]))
        q, bs = F.quantize_4bit(w, blocksize=st["blocksize"], quant_type=st["quant_type"],
                                compress_statistics="nested_offset" in st)
        theirs = {f"{m}.weight": q, **{f"{m}.weight.{k}": v for k, v in bs.as_dict(packed=True).items()}}
        ours = {k: v for k, v in tensors.items() if k == m + ".weight" or k.startswith(m + ".weight.")}
        layout = {k: (v.dtype, tuple(v.shape)) for k, v in ours.items()}
        want = {k: (v.dtype, tuple(v.shape)) for k, v in theirs.items() if QS_PREFIX not in k}
        want.update({k: (torch.uint8, tuple(ours[k].shape)) for k in theirs if QS_PREFIX in k and k in ours})
        if not check(set(layout) == set(theirs) and layout == want, f"{name}: {m}: tensors {layout} != bitsandbytes' {want}"):
            continue
        their_st = json.loads(bytes(theirs[next(k for k in theirs if QS_PREFIX in k)].tolist()))
        check(list(st) == list(their_st) and all(st[k] == their_st[k] for k in st if k != "nested_offset"),
              f"{name}: {m}: quant_state {st} != bitsandbytes' {their_st}")
        # 4. bitsandbytes decoding our tensors
        qs = quant_state_of(tensors, m)
        want32 = ref[m + ".weight"]
        native = F.dequantize_4bit(tensors[m + ".weight"], qs)
        check(native.dtype == getattr(torch, st["dtype"]), f"{name}: {m}: bitsandbytes decodes to {native.dtype}")
        qs.dtype = torch.float32
        f32 = F.dequantize_4bit(tensors[m + ".weight"], qs)
        # FP4 code 8 decodes to -0 in moeq and bitsandbytes' CUDA kernels, to +0 in its torch
        # kernel (the pinned CPU path): the sign of that zero is folded, every other bit compared.
        fold = (lambda t: t + 0.0) if st["quant_type"] == "fp4" else (lambda t: t)
        n32 = bit_diffs(fold(f32), fold(want32))
        n_native = bit_diffs(fold(native), fold(want32.to(native.dtype)))
        same32, same_native = n32 == 0, n_native == 0
        check(same32, f"{name}: {m}: bitsandbytes' float32 decoding differs from moeq's in {n32} of {f32.numel()} values (bitwise)")
        check(same_native, f"{name}: {m}: bitsandbytes' {native.dtype} decoding differs from moeq's in "
              f"{n_native} of {native.numel()} values (bitwise)")
        exact += same32 and same_native
    return tensors, modules, exact, qc


def mutation_check(tensors, ref):
    """Step 4 can fail: expert 1's quant_state (its own nested offset) on expert 0's tensors."""
    m0, m1 = "model.layers.0.mlp.experts.0.gate_proj", "model.layers.0.mlp.experts.1.gate_proj"
    bad = {k: v for k, v in tensors.items() if k.startswith(m0 + ".weight")}
    k0 = next(k for k in bad if QS_PREFIX in k)
    bad[k0] = tensors[k0.replace(m0, m1)]
    qs = quant_state_of(bad, m0)
    qs.dtype = torch.float32
    deq = F.dequantize_4bit(bad[m0 + ".weight"], qs)
    if check(not torch.equal(deq, ref[m0 + ".weight"]), "mutation check: a wrong nested offset went unnoticed"):
        print(f"mutation check: {m0} decoded with {m1}'s quant_state differs from moeq's values, as it must")


def no_linear_experts(tiny):
    """Step 5's premise, checked: in transformers, no family's experts are nn.Linear."""
    for fam in FAMILIES:
        cfg = transformers.AutoConfig.from_pretrained(tiny / fam / "model")
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(cfg)
        linear = [n for n, mod in model.named_modules() if isinstance(mod, torch.nn.Linear) and ".experts." in n]
        check(not linear, f"{fam}: transformers has nn.Linear experts ({linear[:2]}): test from_pretrained of nf4_experts for it")
    print(f"transformers {transformers.__version__}: the experts of all {len(FAMILIES)} families are fused nn.Parameters, "
          "not nn.Linear: bitsandbytes' integration leaves them unquantized, from_pretrained cannot load 4-bit experts")


def transformers_case(moeq, work, tiny):
    src = tiny / "qwen3_moe" / "model"
    out, dump = work / "tf_attn_nf4", work / "tf_attn_nf4.ref"
    quantize(moeq, src, "recipe: attn_nf4\nexport: bnb\nweight_only: true\nrules:\n" + ATTN_NF4, out, dump)
    tensors, modules, exact, qc = check_export("tf_attn_nf4", out, load_dir(dump), load_dir(src))
    check(len(modules) == 2 * 4, f"tf_attn_nf4: {len(modules)} quantized modules, expected 8")
    model = AutoModelForCausalLM.from_pretrained(out, device_map="cpu")
    ref = load_dir(dump)
    linear4 = {n: mod for n, mod in model.named_modules() if isinstance(mod, bnb.nn.Linear4bit)}
    check(sorted(linear4) == modules, f"tf_attn_nf4: Linear4bit modules {sorted(linear4)} != {modules}")
    for n, mod in linear4.items():
        deq = F.dequantize_4bit(mod.weight.data, mod.weight.quant_state)
        check(torch.equal(deq, ref[n + ".weight"].to(deq.dtype)), f"tf_attn_nf4: {n}: transformers' Linear4bit decodes differently")
    # Logits: the source model with moeq's dequantized weights substituted.
    base = AutoModelForCausalLM.from_pretrained(src, device_map="cpu")
    sd = base.state_dict()
    for n in modules:
        sd[n + ".weight"] = ref[n + ".weight"].to(sd[n + ".weight"].dtype)
    base.load_state_dict(sd)
    ids = torch.randint(0, base.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model(ids).logits.float(), base(ids).logits.float()
    diff = (a - b).abs().max().item()
    check(torch.isfinite(a).all().item() and diff <= 1e-2 * b.abs().max().item(),
          f"tf_attn_nf4: logits of the loaded export differ from the substituted source by {diff}")
    # transformers' own 4-bit checkpoint of the same source
    theirs_dir = work / "tf_native"
    tq = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                            bnb_4bit_compute_dtype=torch.bfloat16)
    AutoModelForCausalLM.from_pretrained(src, quantization_config=tq, device_map="cpu").save_pretrained(theirs_dir)
    theirs = load_dir(theirs_dir)
    mine = {k: (v.dtype, tuple(v.shape) if QS_PREFIX not in k else None) for k, v in tensors.items()}
    native = {k: (v.dtype, tuple(v.shape) if QS_PREFIX not in k else None) for k, v in theirs.items()}
    check(mine == native, "tf_attn_nf4: tensors differ from transformers' own 4-bit checkpoint: "
          f"only ours {sorted(set(mine) - set(native))[:4]}, only theirs {sorted(set(native) - set(mine))[:4]}, "
          f"other dtype/shape {[k for k in mine if k in native and mine[k] != native[k]][:4]}")
    tqc = json.loads((theirs_dir / "config.json").read_text())["quantization_config"]
    check({**qc, "llm_int8_skip_modules": None} == tqc, f"tf_attn_nf4: quantization_config {qc} != transformers' {tqc} (skip list aside)")
    print(f"tf_attn_nf4  transformers from_pretrained: {len(linear4)} Linear4bit decode to moeq's values, logits max diff {diff:.3g}; "
          f"same {len(mine)} tensor names/dtypes/shapes and config as transformers' own load_in_4bit save")


def main():
    moeq, work, tiny = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    shutil.rmtree(work, ignore_errors=True)  # fresh outputs each run
    work.mkdir(parents=True)
    print(f"bitsandbytes {bnb.__version__}, transformers {transformers.__version__}, torch {torch.__version__}")
    subprocess.run([moeq, "make-demo", str(work / "demo"), "--overwrite", "--layers", "2", "--experts", "8"],
                   check=True, stdout=subprocess.DEVNULL)
    cases = [(n, work / "demo" / f"qwen3_moe_{layout}", "recipe: x\nexport: bnb\nweight_only: true\nrules:\n" + r)
             for n, layout, r in DEMO_CASES]
    cases += [(f"tiny_{fam}", tiny / fam / "model", (ROOT / "recipes" / "nf4_all.yaml").read_text()) for fam in FAMILIES]
    for name, src, recipe in cases:
        out, dump = work / name, work / f"{name}.ref"
        quantize(moeq, src, recipe, out, dump)
        ref = load_dir(dump)
        src_weights = load_dir(src)
        if "fused" in name:  # no per-expert names in a fused source: the quantized ones, and the export's float weights
            src_weights = {**ref, **{k: v for k, v in load_dir(out).items() if k.endswith(".weight") and v.is_floating_point()}}
        tensors, modules, exact, qc = check_export(name, out, ref, src_weights)
        print(f"{name:18s} {qc['bnb_4bit_quant_type']} dq={qc['bnb_4bit_use_double_quant']}: {len(modules)} quantized modules, "
              f"{exact} decoded by bitsandbytes exactly as moeq (float32 and {json.loads(bytes(tensors[next(k for k in tensors if QS_PREFIX in k)].tolist()))['dtype']}), "
              f"skip list {len(qc['llm_int8_skip_modules'])}")
        if name == "nf4_dq":
            mutation_check(tensors, ref)
    no_linear_experts(tiny)
    transformers_case(moeq, work, tiny)
    print(f"{len(cases) + 1} cases, {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
