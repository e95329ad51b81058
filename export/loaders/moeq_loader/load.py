"""load_bnb_export: a moeq bitsandbytes 4-bit export (`export: bnb`) as a transformers model
whose routed experts stay 4-bit.

transformers loads everything it can (embeddings, norms, routers, and every quantized
nn.Linear as a bitsandbytes Linear4bit through its own bitsandbytes integration); its fused
experts parameters cannot hold per-expert 4-bit weights, so each experts module with 4-bit
experts in the export gets its `gate_up_proj` / `down_proj` replaced by a PackedExpertWeight
read from the export's tensors, and the model runs the eager experts forward (one hit expert at
a time, dequantized on the fly). Every tensor of the export is accounted for: transformers'
missing and unexpected keys must be exactly the experts parameters replaced and the 4-bit
expert tensors read here, anything else is an error.

Load peak: transformers allocates (at full size, in the compute dtype) every parameter it finds
no fitting tensor for, and the fused experts parameters never fit the per-expert 4-bit tensors.
So while `from_pretrained` runs, the experts modules that will hold 4-bit experts get empty
placeholders for `gate_up_proj` / `down_proj` (a torch parameter-registration hook, by the
experts modules' construction order learnt from the same class built on the meta device): no
bf16 expert is ever allocated. When every experts module is 4-bit, the per-expert tensors are
also renamed away from transformers (`key_mapping`), so that its conversion mapping does not
merge them into one more copy; this loader reads them itself, one layer at a time
(tests/python/loader_peak_memory.py bounds the peak).
"""
import contextlib
import json
import re
from pathlib import Path

import torch
from bitsandbytes.functional import QuantState
from safetensors import safe_open

from .cpu_kernels import pin_portable_cpu_kernels
from .packed import PackedExpertWeight, PartMeta

QS_PREFIX = "quant_state.bitsandbytes__"
# <experts module on disk>.<expert>.<projection>.weight[.<quant state part>]
EXPERT_KEY = re.compile(r"^(?P<mod>.+\.experts)\.(?P<e>\d+)\.(?P<proj>[A-Za-z0-9_]+)\.weight(?:\.(?P<part>.+))?$")
ROLES = {"gate_proj": "gate", "w1": "gate", "up_proj": "up", "w3": "up", "down_proj": "down", "w2": "down"}
LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


class LoaderError(RuntimeError):
    """A moeq export that this loader cannot load as it is; the message names file and tensor."""


def _index(path):
    """{tensor name: safetensors file} over every shard of the export."""
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise LoaderError(f"{path}: no *.safetensors files")
    where = {}
    for f in files:
        with safe_open(str(f), framework="pt") as h:
            for k in h.keys():
                where[k] = f
    return where


def _expert_tensors(where):
    """{disk experts module: {expert: {role: module name}}} for every expert linear with a
    bitsandbytes quant state, and {module name: its tensor names}."""
    out, names = {}, {}
    for k in where:
        m = EXPERT_KEY.match(k)
        if not m or not (m["part"] or "").startswith(QS_PREFIX):
            continue
        role = ROLES.get(m["proj"])
        if role is None:
            raise LoaderError(f"{where[k].name}: {k}: unknown expert projection '{m['proj']}' "
                              f"(known: {', '.join(sorted(ROLES))})")
        module = k[: k.index(".weight.")]
        slot = out.setdefault(m["mod"], {}).setdefault(int(m["e"]), {})
        if role in slot:
            raise LoaderError(f"{where[k].name}: {k}: expert {m['e']} of {m['mod']} has two {role} projections")
        slot[role] = module
    modules = {mod for slots in out.values() for slot in slots.values() for mod in slot.values()}
    for k in where:
        m = EXPERT_KEY.match(k)
        if m and k[: k.index(".weight")] in modules:
            names.setdefault(k[: k.index(".weight")], []).append(k)
    return out, names


def _read_expert(where, module, keys, device, handles):
    """(packed uint8 weight, QuantState) of one expert linear from its tensors `keys`, the
    QuantState built by bitsandbytes' QuantState.from_dict as transformers builds it for a
    Linear4bit."""
    if module + ".weight" not in keys:
        raise LoaderError(f"{where[keys[0]].name}: {module}: quant state without {module}.weight")

    def get(k):
        f = where[k]
        if f not in handles:
            handles[f] = safe_open(str(f), framework="pt")
        return handles[f].get_tensor(k)

    stats = {k[len(module) + 1:]: get(k) for k in keys if k != module + ".weight"}
    packed = get(module + ".weight")
    if packed.dtype != torch.uint8:
        raise LoaderError(f"{where[module + '.weight'].name}: {module}.weight is {packed.dtype}, expected uint8 (bitsandbytes 4-bit)")
    try:
        qs = QuantState.from_dict(stats, device=torch.device(device))
    except (ValueError, AssertionError, KeyError) as err:
        raise LoaderError(f"{where[module + '.weight'].name}: {module}: bitsandbytes cannot read its quant state: {err}") from err
    return packed.to(device), qs


def _experts_modules(model):
    """{layer index: (name, module)} for every fused experts module of the model."""
    out = {}
    for name, mod in model.named_modules():
        if hasattr(mod, "gate_up_proj") and hasattr(mod, "down_proj") and type(mod).__name__.endswith("Experts"):
            m = LAYER.search(name + ".")
            if not m:
                raise LoaderError(f"experts module {name}: no layer index in its name")
            out[int(m.group(1))] = (name, mod)
    return out


EXPERT_PARAMS = ("gate_up_proj", "down_proj")
HIDDEN = ".moeq_4bit_hidden."  # the per-expert 4-bit tensors, renamed for transformers (no "experts": its
# conversion patterns such as Mixtral's `.experts.*.w1.weight` must not match them)


@contextlib.contextmanager
def _experts_params_hook(on_register):
    """Calls on_register(index, module, name, param) for each fused experts parameter as a module
    registers it (index: the experts module's construction order); its return value, when not
    None, is registered instead."""
    order = {}

    def hook(module, name, param):
        if name not in EXPERT_PARAMS or not type(module).__name__.endswith("Experts"):
            return None
        return on_register(order.setdefault(id(module), len(order)), module, name, param)

    handle = torch.nn.modules.module.register_module_parameter_registration_hook(hook)
    try:
        yield order
    finally:
        handle.remove()


def _experts_construction_order(config):
    """{layer index: construction index} of the experts modules of the model `config` builds
    (built on the meta device: no memory)."""
    from transformers import AutoModelForCausalLM
    built = {}

    def record(i, module, name, param):
        built[id(module)] = i  # and keep the parameter (None)

    with _experts_params_hook(record):
        with torch.device("meta"):
            meta = AutoModelForCausalLM.from_config(config)
    return {layer: built[id(mod)] for layer, (name, mod) in _experts_modules(meta).items() if id(mod) in built}


def _placeholder(param):
    return torch.nn.Parameter(torch.empty(0, dtype=param.dtype, device=param.device), requires_grad=False)


def _packed_module(where, tensors, disk_mod, experts, mod, name, device, handles):
    """The two PackedExpertWeights for one layer's experts."""
    n = getattr(mod, "num_experts", None)
    if sorted(experts) != list(range(n)):
        missing = sorted(set(range(n)) - set(experts))
        raise LoaderError(f"{disk_mod}: 4-bit experts {sorted(experts)[:4]}... but the model has {n}: experts {missing[:8]} "
                          "are not 4-bit (a layer's experts load 4-bit all together or not at all)")
    if not getattr(mod, "has_gate", True) or getattr(mod, "has_bias", False) and not hasattr(mod, "gate_up_proj_bias"):
        raise LoaderError(f"{name}: {type(mod).__name__} has no gate projection or unknown biases; not supported")
    transposed = bool(getattr(mod, "is_transposed", False))
    concatenated = bool(getattr(mod, "is_concatenated", True))
    if concatenated and transposed:
        raise LoaderError(f"{name}: {type(mod).__name__}: concatenated and transposed experts are not supported")
    parts = {}
    for role in ("gate", "up", "down"):
        metas, items = None, []
        for e in range(n):
            if role not in experts[e]:
                raise LoaderError(f"{disk_mod}.{e}: no 4-bit {role} projection in the export")
            packed, qs = _read_expert(where, experts[e][role], tensors[experts[e][role]], device, handles)
            meta = PartMeta(qs)
            if metas is None:
                metas = meta
            elif meta.key() != metas.key():
                raise LoaderError(f"{experts[e][role]}: quant state {meta.key()} differs from expert 0's {metas.key()}")
            items.append((packed, qs))
        parts[role] = (metas, items)
    gu = PackedExpertWeight({k: parts[k] for k in ("gate", "up")}, "interleaved_t" if transposed else "rows", f"{name}.gate_up_proj")
    down = PackedExpertWeight({"down": parts["down"]}, "t" if transposed else "rows", f"{name}.down_proj")
    # The shapes the module's class defines (what transformers loaded there is not a weight).
    try:
        with torch.device("meta"):
            fresh = type(mod)(mod.config)
    except Exception as err:  # noqa: BLE001  (any failure: say which class)
        raise LoaderError(f"{name}: cannot build {type(mod).__name__}(config) to learn its shapes: {err}") from err
    for pname, packed in (("gate_up_proj", gu), ("down_proj", down)):
        want = tuple(getattr(fresh, pname).shape)
        got = (n,) + tuple(packed[0].shape)
        if got != want:
            raise LoaderError(f"{disk_mod}: 4-bit experts decode to {list(got)}, {name}.{pname} is {list(want)}")
    return gu, down


def load_bnb_export(path, device="cpu", dtype=None, **from_pretrained_kwargs):
    """A moeq `export: bnb` directory as a transformers AutoModelForCausalLM (eval mode).

    Linears the export quantizes are bitsandbytes Linear4bit (transformers' own loading);
    routed experts hold their per-expert 4-bit weights and absmax (PackedExpertWeight) and
    dequantize each hit expert on the fly. dtype defaults to the export's
    bnb_4bit_compute_dtype. `model.moeq_loader` says what was loaded how.
    """
    from transformers import AutoModelForCausalLM

    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise LoaderError(f"{cfg_file}: not found")
    qc = json.loads(cfg_file.read_text()).get("quantization_config") or {}
    if qc.get("quant_method") != "bitsandbytes" or not qc.get("load_in_4bit"):
        raise LoaderError(f"{cfg_file}: quantization_config is not bitsandbytes 4-bit "
                          f"(quant_method {qc.get('quant_method')!r}, load_in_4bit {qc.get('load_in_4bit')!r})")
    if dtype is None:
        dtype = getattr(torch, qc.get("bnb_4bit_compute_dtype") or "bfloat16")
    where = _index(path)
    experts, tensors = _expert_tensors(where)
    expert_keys = {k for ks in tensors.values() for k in ks}
    from transformers import AutoConfig
    disk_layers = set()
    for disk_mod in experts:
        m = LAYER.search(disk_mod + ".")
        if m:
            disk_layers.add(int(m.group(1)))
    order = _experts_construction_order(AutoConfig.from_pretrained(str(path)))
    packed_order = {order[layer] for layer in disk_layers if layer in order}
    kwargs = dict(from_pretrained_kwargs)
    if packed_order and packed_order == set(order.values()):
        # every experts module is 4-bit: hide the per-expert tensors from transformers (renamed, they
        # match no parameter and are never read), else its conversion mapping merges them into the
        # fused experts parameter, one more copy of all experts during the load
        kwargs["key_mapping"] = dict(kwargs.get("key_mapping") or {}, **{r"\.experts\.(?=\d)": HIDDEN})
    with _experts_params_hook(lambda i, module, name, param: _placeholder(param) if i in packed_order else None):
        model, info = AutoModelForCausalLM.from_pretrained(
            str(path), device_map=device, dtype=dtype, experts_implementation="eager", output_loading_info=True, **kwargs)
    modules = _experts_modules(model)
    by_layer = {}
    for disk_mod in experts:
        m = LAYER.search(disk_mod + ".")
        if not m or int(m.group(1)) not in modules:
            raise LoaderError(f"{where[next(iter(expert_keys))].name}: 4-bit experts {disk_mod}: the model has no experts module "
                              f"in that layer (experts modules in layers {sorted(modules)})")
        by_layer[int(m.group(1))] = disk_mod
    replaced = []
    for layer, disk_mod in sorted(by_layer.items()):
        name, mod = modules[layer]
        handles = {}  # opened per layer: the mapped file pages of one layer at a time
        gu, down = _packed_module(where, tensors, disk_mod, experts[disk_mod], mod, name, device, handles)
        del handles
        for pname, packed in (("gate_up_proj", gu), ("down_proj", down)):
            delattr(mod, pname)  # frees what transformers put there
            setattr(mod, pname, packed)
        replaced += [f"{name}.gate_up_proj", f"{name}.down_proj"]
    # Nothing else may have been left to chance by transformers: what it could not place must
    # be the replaced experts parameters and the 4-bit expert tensors (under their checkpoint
    # names, or renamed into the experts module where its conversion mapping merged them).
    under = tuple(modules[l][0] + "." for l in by_layer)
    ours = lambda k: k in expert_keys or k.startswith(under) or HIDDEN in k  # noqa: E731
    bad = {what: sorted(k[0] if isinstance(k, tuple) else k for k in (info.get(what) or [])
                        if not ours(k[0] if isinstance(k, tuple) else k))
           for what in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(bad.values()):
        raise LoaderError(f"{path}: transformers left parameters unfilled {bad['missing_keys'][:4]}, tensors unread "
                          f"{bad['unexpected_keys'][:4]}, sizes mismatched {bad['mismatched_keys'][:4]} beyond the 4-bit experts")
    model.set_experts_implementation("eager")
    model.eval()
    on_cpu = any(p.device.type == "cpu" for p in model.parameters())
    cpu_note = pin_portable_cpu_kernels(model) if on_cpu else None
    if cpu_note:
        print(cpu_note)
    model.moeq_loader = {"packed_experts_modules": [modules[l][0] for l in sorted(by_layer)],
                         "expert_tensors_read": len(expert_keys),
                         "float_experts_modules": [modules[l][0] for l in sorted(set(modules) - set(by_layer))],
                         "cpu_kernels": cpu_note or "bitsandbytes' CPU kernels as chosen (none host-dependent here)"}
    return model
