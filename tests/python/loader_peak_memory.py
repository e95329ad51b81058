"""Peak memory of moeq_loader.load_bnb_export while it loads an NF4 experts export (issue 15).

usage: loader_peak_memory.py MOEQ_BINARY WORK_DIR [--no-baseline]   (a ctest test; exit 1 on failure)

For qwen3_moe (experts one tensor per expert on disk) and gemma4 / gpt_oss (experts fused on
disk in the source checkpoint): a random checkpoint whose routed experts dominate its bytes
(tiny_models.py's config with 8 layers of 32 wide experts: 192 MiB of bf16 experts) is quantized with
recipes/nf4_experts.yaml. A fresh child process (MALLOC_MMAP_THRESHOLD_ fixed, so freed large
blocks go back to the system and RSS is honest) imports everything and loads a small export of
the same family first (code paths warm), then resets its peak RSS (/proc/self/clear_refs "5"),
loads the big export and reads VmHWM. The peak's growth over the RSS before the load must stay
within BOUND x the export's bytes on disk (its 4-bit size; file pages of the mmapped export
count in RSS), which is below the experts' bf16 bytes, so a load that materializes the experts
in bf16 fails the test.

The bound can fail: the same measurement of plain transformers `from_pretrained` of the same
export (which allocates the fused experts parameters at full size before anything replaces them)
must exceed it (the baseline; --no-baseline skips it).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from consumer_util import check, failures  # noqa: E402

# peak growth during the load <= BOUND x the export's bytes (the 4-bit size) + SLACK
BOUND, SLACK = 1.75, 16 << 20
MIB = 1 << 20
# family -> config overrides making the routed experts the bulk of the checkpoint
# (8 layers: what one layer's experts weigh, the loader's transient, is 1/8 of them; real MoEs
# have 24-94 layers)
ALT = ["sliding_attention", "full_attention"] * 4
BIG = {
    "qwen3_moe": dict(moe_intermediate_size=2048, num_experts=32, num_hidden_layers=8),
    "gemma4": dict(moe_intermediate_size=2048, num_experts=32, num_hidden_layers=8, layer_types=ALT),
    "gpt_oss": dict(intermediate_size=2048, num_local_experts=32, num_hidden_layers=8, layer_types=ALT),
}
SMALL = {f: {k: (64 if "intermediate" in k else v if k in ("num_hidden_layers", "layer_types") else 8) for k, v in o.items()}
         for f, o in BIG.items()}


def make_source(fam, overrides, out):
    import torch
    import transformers
    from tiny_models import tiny_config
    cfg = tiny_config(fam)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(str(out))


def dir_bytes(d):
    return sum(f.stat().st_size for f in Path(d).glob("*.safetensors"))


def child(mode, warm, big):
    """Runs in the child: prints one JSON line {before, peak, after, bf16_experts, held}."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
    import gc
    import torch  # noqa: F401
    import transformers
    import moeq_loader
    transformers.logging.set_verbosity_error()

    def load(d):
        if mode == "loader":
            return moeq_loader.load_bnb_export(d)
        return transformers.AutoModelForCausalLM.from_pretrained(d, experts_implementation="eager")

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"/proc/self/status has no {key}")

    m = load(warm)
    del m
    gc.collect()
    before = status("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError as err:
        raise SystemExit(f"/proc/self/clear_refs: cannot reset the peak RSS ({err}); this test needs Linux >= 4.0")
    m = load(big)
    peak = status("VmHWM")
    after = status("VmRSS")
    out = {"before": before, "peak": peak, "after": after}
    if mode == "loader":
        mem = moeq_loader.model_bytes(m)
        out.update(bf16_experts=mem["experts_bf16_bytes"], held=mem["bytes"], experts_held=mem["experts_bytes"])
    print(json.dumps(out))


def measure(site, mode, warm, big):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(Path(__file__).resolve().parent)]),
               MALLOC_MMAP_THRESHOLD_=str(1 << 20), MALLOC_TRIM_THRESHOLD_=str(1 << 20), PYTHONWARNINGS="ignore")
    r = subprocess.run([sys.executable, __file__, "--child", mode, str(warm), str(big)], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        check(False, f"{big} ({mode}): child failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    moeq, work = sys.argv[1], Path(sys.argv[2])
    baseline = "--no-baseline" not in sys.argv[3:]
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    site = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site),
                    str(ROOT / "export" / "loaders")], check=True)
    recipe = ROOT / "recipes" / "nf4_experts.yaml"
    for fam in BIG:
        paths = {}
        for size, overrides in (("small", SMALL[fam]), ("big", BIG[fam])):
            src, out = work / f"{fam}_{size}_src", work / f"{fam}_{size}_nf4"
            make_source(fam, overrides, src)
            subprocess.run([moeq, "quantize", str(src), "--recipe", str(recipe), "-o", str(out), "--overwrite"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            paths[size] = (src, out)
            if size == "big":
                shutil.rmtree(src)  # only the export is read from here on
        export = paths["big"][1]
        size4 = dir_bytes(export)
        m = measure(site, "loader", paths["small"][1], export)
        if m is None:
            continue
        grow = m["peak"] - m["before"]
        limit = BOUND * size4 + SLACK
        check(limit < m["bf16_experts"], f"{fam}: bound {limit / MIB:.0f} MiB is not below the experts' bf16 bytes "
              f"{m['bf16_experts'] / MIB:.0f} MiB: the test could not fail (make the experts bigger)")
        check(grow <= limit, f"{fam}: load_bnb_export's peak RSS grew by {grow / MIB:.1f} MiB > {limit / MIB:.1f} MiB "
              f"({BOUND} x the {size4 / MIB:.1f} MiB export + {SLACK / MIB:.0f} MiB); experts in bf16: {m['bf16_experts'] / MIB:.1f} MiB")
        line = (f"{fam:10s} export {size4 / MIB:6.1f} MiB (experts bf16 {m['bf16_experts'] / MIB:6.1f} MiB): load_bnb_export "
                f"peak +{grow / MIB:6.1f} MiB = {grow / size4:.2f}x the export, {grow / m['bf16_experts']:.2f}x bf16 experts "
                f"(bound {limit / MIB:.0f} MiB); resident after +{(m['after'] - m['before']) / MIB:.1f} MiB, model holds "
                f"{m['held'] / MIB:.1f} MiB")
        if baseline:
            b = measure(site, "from_pretrained", paths["small"][1], export)
            if b is not None:
                bgrow = b["peak"] - b["before"]
                check(bgrow > limit, f"{fam}: plain from_pretrained peaked at +{bgrow / MIB:.1f} MiB, within the bound "
                      f"{limit / MIB:.1f} MiB: the bound does not detect bf16 experts")
                line += f"; plain from_pretrained peak +{bgrow / MIB:.1f} MiB ({bgrow / size4:.2f}x)"
        print(line)
    print(f"{len(BIG)} families, {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:5])
    else:
        main()
