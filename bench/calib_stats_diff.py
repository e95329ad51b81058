"""Two calib.h5 files of the same model and ids (e.g. moeq before and after a change): how many
site amax are identical, the largest relative difference, and whether tokens per expert agree.
Usage: python3 calib_stats_diff.py A.h5 B.h5"""
import sys
import h5py
import numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
na, nb = [x.decode() for x in a["/sites/name"][:]], [x.decode() for x in b["/sites/name"][:]]
assert na == nb, "site lists differ"
x, y = a["/sites/amax"][:], b["/sites/amax"][:]
rel = np.abs(x - y) / np.maximum(np.abs(x), 1e-30)
print(f"sites {len(na)}: amax identical {np.mean(x == y) * 100:.1f}%, max rel diff {rel.max():.3e} ({na[int(rel.argmax())]}), median {np.median(rel):.1e}")
same_tpe = all(np.array_equal(a[f"/moe_layers/{k}/tokens_per_expert"][:], b[f"/moe_layers/{k}/tokens_per_expert"][:]) for k in a["/moe_layers"])
tot = sum(int(np.abs(a[f"/moe_layers/{k}/tokens_per_expert"][:] - b[f"/moe_layers/{k}/tokens_per_expert"][:]).sum()) for k in a["/moe_layers"])
print(f"tokens per expert identical in every layer: {same_tpe} (sum |diff| {tot} of {int(a['/moe_layers/0/tokens_per_expert'][:].sum()) * len(a['/moe_layers'])})")
print("seconds old/new:", a.attrs["seconds"], b.attrs["seconds"])
