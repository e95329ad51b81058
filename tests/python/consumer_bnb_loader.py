"""moeq_loader (export/loaders, installed with pip from the checkout) as the consumer of moeq's
bitsandbytes 4-bit exports in transformers.

usage: consumer_bnb_loader.py MOEQ_BINARY WORK_DIR TINY_DIR [TRAINED_MODEL EVAL_JSONL]
       (a ctest test; exit status 1 on failure; MOEQ_TEST_DEVICE=cuda runs the models on the GPU)

0. `pip install --no-deps --target WORK_DIR/site export/loaders` and the package imported from there;
For the 8 families of TINY_DIR x {nf4_experts, nf4_all, fp4_experts (plain, block 128)}:
1. load_bnb_export loads the export: every layer's experts module holds PackedExpertWeights,
   and with nf4_all every other quantized linear is a bitsandbytes Linear4bit;
2. the oracle is the source model (transformers from_pretrained of the tiny checkpoint) with
   moeq's dequantized weights (`moeq quantize --dump-dequant`) written into its parameters,
   through the per-expert views that make_tiny.expert_weights checked against each experts
   module's forward; every expert of the loaded model decodes to the oracle's fused weights bit
   for bit (`gate_up_proj[e]`, `down_proj[e]`);
3. logits of a fixed batch equal the oracle's (both with the eager experts forward: the loader
   runs it; max |diff| reported, 0 expected) and are within bf16 tolerance of the oracle run
   with transformers' default experts implementation;
4. greedy generate (8 new tokens) gives the oracle's tokens;
5. memory: parameters + buffers + Linear4bit quant states of the loaded model against the same
   weights in bf16; the packed experts must be at most 0.30 of bf16 (NF4/FP4 + absmax);
A checkpoint without a bitsandbytes quantization_config is refused (LoaderError naming it).
A mutation check shows step 2/3 can fail: two experts' packed bytes swapped change the logits.
With TRAINED_MODEL (the trained qwen3moe-tiny) and EVAL_JSONL (skipped, and said so, when absent): nf4_experts of it loads, and
its perplexity on the first lines of EVAL_JSONL equals the oracle's.
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
# Eager bitsandbytes: its dequantize helpers are wrapped in torch.compile (minutes here, one
# compile per shape, the same values).
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
import torch  # noqa: E402
import transformers  # noqa: E402
from consumer_util import check, failures, load_dir  # noqa: E402
from make_tiny import expert_weights, find_experts  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402
from tiny_models import FAMILIES  # noqa: E402

transformers.logging.set_verbosity_error()

ROOT = Path(__file__).resolve().parents[2]
DEVICE = os.environ.get("MOEQ_TEST_DEVICE", "cpu")
FP4 = ("recipe: fp4_experts\nexport: bnb\nweight_only: true\nrules:\n  - roles: [experts]\n    format: fp4\n"
       "    params: {block_size: 128}\n  - roles: [attention, dense_mlp, shared_experts, other]\n    enable: false\n")
RECIPES = {"nf4_experts": (ROOT / "recipes" / "nf4_experts.yaml").read_text(),
           "nf4_all": (ROOT / "recipes" / "nf4_all.yaml").read_text(), "fp4_experts": FP4}
# The oracle's own reading of moeq's per-expert names (independent of the package's).
EXPERT = re.compile(r"layers\.(\d+)\..*experts\.(\d+)\.(gate_proj|up_proj|down_proj|w1|w3|w2)\.weight$")
ROLE = {"gate_proj": 0, "w1": 0, "up_proj": 1, "w3": 1, "down_proj": 2, "w2": 2}


def install(work):
    site = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(ROOT / "export" / "loaders")], check=True)
    sys.path.insert(0, str(site))
    import moeq_loader
    check(Path(moeq_loader.__file__).resolve().is_relative_to(site.resolve()),
          f"moeq_loader imported from {moeq_loader.__file__}, not the pip-installed {site}")
    return moeq_loader


def quantize(moeq, src, recipe_text, out, dump):
    recipe = out.with_suffix(".yaml")
    recipe.write_text(recipe_text)
    subprocess.run([moeq, "quantize", str(src), "--recipe", str(recipe), "-o", str(out), "--overwrite",
                    "--dump-dequant", str(dump)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def oracle(src, dump, experts_implementation):
    """The source model with moeq's dequantized weights substituted (experts_implementation
    None: transformers' default); returns (model, count)."""
    kw = {"experts_implementation": experts_implementation} if experts_implementation else {}
    model = AutoModelForCausalLM.from_pretrained(src, device_map=DEVICE, **kw)
    ref = load_dir(dump)
    experts = {layer: mod for layer, mod in find_experts(model)}
    params = dict(model.named_parameters())
    done = 0
    with torch.no_grad():
        for k, w in ref.items():
            m = EXPERT.search(k)
            if m:
                view = expert_weights(experts[int(m[1])], int(m[2]))[ROLE[m[3]]]
                view.copy_(w.to(view.dtype))
            elif k in params:
                params[k].copy_(w.to(params[k].dtype))
            else:
                check(False, f"{dump}: {k}: no such weight in the source model")
                continue
            done += 1
    return model.eval(), done


def ids_for(cfg):
    return torch.randint(0, cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0)).to(DEVICE)


def check_case(ml, name, src, out, dump):
    model = ml.load_bnb_export(out, device=DEVICE)
    ref, n_sub = oracle(src, dump, None)
    default_impl = ref.config._experts_implementation
    ref.set_experts_implementation("eager")
    n_dump = len(load_dir(dump))
    packed = {n: m for n, m in model.named_modules() if isinstance(m, ml.PackedExpertWeight)}
    layers = find_experts(ref)
    check(len(packed) == 2 * len(layers), f"{name}: {len(packed)} packed expert weights, expected {2 * len(layers)}")
    linear4 = [n for n, m in model.named_modules() if type(m).__name__ == "Linear4bit"]
    want_l4 = n_dump - sum(1 for k in load_dir(dump) if EXPERT.search(k))
    check(len(linear4) == want_l4, f"{name}: {len(linear4)} Linear4bit modules, {want_l4} quantized linears outside the experts")
    # 2. every expert decodes to the oracle's fused weights
    refmods = dict(ref.named_modules())
    bad = 0
    for pname, pw in packed.items():
        mod, attr = pname.rsplit(".", 1)
        theirs = getattr(refmods[mod], attr)
        for e in range(len(pw)):
            bad += not torch.equal(pw[e].view(torch.int16), theirs[e].contiguous().view(torch.int16))
    check(bad == 0, f"{name}: {bad} expert weights decode differently from moeq's dequantization")
    # 3. logits
    ids = ids_for(model.config)
    with torch.no_grad():
        a, b = model(ids).logits.float(), ref(ids).logits.float()
    diff = (a - b).abs().max().item()
    check(torch.isfinite(a).all().item() and diff == 0.0, f"{name}: logits differ from the dequantized model's by {diff}")
    # 4. greedy generate
    gen = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        ga, gb = model.generate(ids[:1], **gen), ref.generate(ids[:1], **gen)
    check(torch.equal(ga, gb), f"{name}: greedy generate {ga.tolist()} != the dequantized model's {gb.tolist()}")
    ref.set_experts_implementation(default_impl)
    with torch.no_grad():
        c = ref(ids).logits.float()
    ddiff = (a - c).abs().max().item()
    check(ddiff <= 2e-2 * c.abs().max().item(), f"{name}: logits differ from the dequantized model's "
          f"({default_impl} experts) by {ddiff}")
    # 5. memory
    mem = ml.model_bytes(model)
    check(mem["experts_ratio"] is not None and mem["experts_ratio"] <= 0.30,
          f"{name}: packed experts hold {mem['experts_ratio']} of their bf16 bytes")
    print(f"{name:26s} {len(packed) // 2} packed experts modules, {len(linear4)} Linear4bit, {n_sub}/{n_dump} weights "
          f"substituted in the oracle, decode exact; logits max diff {diff:.3g} (eager), {ddiff:.3g} "
          f"({default_impl}); generate {ga.shape[1] - ids.shape[1]} tokens equal; bytes "
          f"{mem['bytes']} = {mem['ratio']:.3f} of bf16 (experts {mem['experts_ratio']:.3f})")
    return model, ref, ids, a


def mutation_check(ml, model, ids, logits):
    """Swapping two experts' packed bytes in one layer must change the logits."""
    pw = next(m for m in model.modules() if isinstance(m, ml.PackedExpertWeight))
    buf = next(b for n, b in pw.named_buffers() if n.endswith("_weight"))
    saved = buf.clone()
    buf[[0, 1]] = buf[[1, 0]].clone()
    with torch.no_grad():
        moved = model(ids).logits.float()
    buf.copy_(saved)
    if check(not torch.equal(moved, logits), "mutation check: swapped experts went unnoticed"):
        print(f"mutation check: experts 0 and 1 swapped in {pw.where}: logits differ by "
              f"{(moved - logits).abs().max().item():.3g}, as they must")


def refused(ml, src):
    """A checkpoint that is not a bitsandbytes 4-bit export is refused, naming its config."""
    try:
        ml.load_bnb_export(src)
        check(False, f"{src}: load_bnb_export loaded a checkpoint without bitsandbytes quantization_config")
    except ml.LoaderError as err:
        check(str(src / "config.json") in str(err), f"refusal does not name the config file: {err}")
        print(f"refused as it must: {err}")


def perplexity(model, ids):
    with torch.no_grad():
        return math.exp(model(ids, labels=ids).loss.float().item())


def trained_case(ml, moeq, work, src, data):
    out, dump = work / "trained_nf4_experts", work / "trained_nf4_experts.ref"
    quantize(moeq, src, RECIPES["nf4_experts"], out, dump)
    tok = transformers.AutoTokenizer.from_pretrained(src)
    lines = [json.loads(l)["text"] for l in open(data) if l.strip()][:4]
    batches = [tok(t, return_tensors="pt").input_ids[:, :128].to(DEVICE) for t in lines]
    model = ml.load_bnb_export(out, device=DEVICE)
    ref, _ = oracle(src, dump, "eager")
    pa = [perplexity(model, b) for b in batches]
    pb = [perplexity(ref, b) for b in batches]
    check(pa == pb, f"trained nf4_experts: perplexity {pa} != the dequantized model's {pb}")
    src_model = AutoModelForCausalLM.from_pretrained(src, device_map=DEVICE, experts_implementation="eager")
    ps = [perplexity(src_model, b) for b in batches]
    mem = ml.model_bytes(model)
    print(f"trained qwen3moe-tiny nf4_experts: perplexity on {len(batches)} eval lines ({sum(b.shape[1] for b in batches)} "
          f"tokens) {sum(pa) / len(pa):.4f} loaded, {sum(pb) / len(pb):.4f} dequantized model (equal: {pa == pb}), "
          f"{sum(ps) / len(ps):.4f} bf16 source; bytes {mem['ratio']:.3f} of bf16 (experts {mem['experts_ratio']:.3f})")


def main():
    moeq, work, tiny = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, device {DEVICE}")
    ml = install(work)
    refused(ml, tiny / "qwen3_moe" / "model")
    cases = 0
    for fam in FAMILIES:
        src = tiny / fam / "model"
        for rname, recipe in RECIPES.items():
            name = f"{fam}/{rname}"
            out, dump = work / f"{fam}_{rname}", work / f"{fam}_{rname}.ref"
            quantize(moeq, src, recipe, out, dump)
            try:
                model, _, ids, logits = check_case(ml, name, src, out, dump)
            except Exception as err:  # noqa: BLE001  (record and go on with the other cases)
                check(False, f"{name}: {type(err).__name__}: {err}")
                continue
            cases += 1
            if fam == "qwen3_moe" and rname == "nf4_experts":
                mutation_check(ml, model, ids, logits)
    trained = [Path(a) for a in sys.argv[4:6]]
    if len(trained) == 2 and (trained[0] / "config.json").is_file() and trained[1].is_file():
        trained_case(ml, moeq, work, *trained)
        cases += 1
    else:
        print(f"SKIPPED: the trained-model perplexity case: {[str(t) for t in trained]} not found")
    print(f"{cases} cases, {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
