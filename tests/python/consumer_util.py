"""Shared by the consumer tests (consumer_*_export.py): failure bookkeeping and reading an
export's tensors through the safetensors library itself."""
from pathlib import Path

from safetensors import safe_open

failures = []


def check(cond, msg):
    """Records a failure (the script exits non-zero at the end) and goes on checking."""
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, flush=True)
    return cond


def load_dir(d):
    """Every tensor of every safetensors file in d (each file opened by safetensors)."""
    out = {}
    for f in sorted(Path(d).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as h:
            for k in h.keys():
                out[k] = h.get_tensor(k)
    return out
