#!/usr/bin/env python3
"""A copy of a moeq calib.h5 with every input amax (/sites/amax) multiplied by F.

For the input-scale check of docs/quality.md ("The activation-only floor"): moeq's input scale
is amax / (6 * 448) from the calibrated amax (calib/calibrators/input_scales.h, max only), so a
smaller amax is a clipped per-tensor global scale. Needs h5py (not in the project venv: a
separate venv, `pip install h5py numpy`).

Usage: scale_amax.py CALIB.h5 OUT.h5 F
"""
import shutil
import sys

import h5py

src, dst, f = sys.argv[1], sys.argv[2], float(sys.argv[3])
if not f > 0:
    sys.exit(f"scale_amax.py: the factor must be > 0, got {f}")
shutil.copyfile(src, dst)
with h5py.File(dst, "r+") as h:
    a = h["sites/amax"]
    before = a[:].copy()
    a[...] = (before * f).astype(before.dtype)
    print(f"{dst}: {len(before)} site amax x {f}")
