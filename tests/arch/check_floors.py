#!/usr/bin/env python3
"""Fails on an upward include: a file that includes a header of a floor above its own.

The house plan (docs/extending.md), lowest floor first:

  src/core < src/io < src/model < src/formats < src/tensor < src/recipe   (the ground floor, src/)
  < plugins < calib < export < app/run < app/compare < app/cli < bench      (the wings, the roof)

A file may include its own floor and any floor below it. An #include "..." is resolved as the
compiler does: beside the including file, then under src/, then under the repository root.
Includes that resolve to no file of the tree (system, libtorch, generated) are not checked.

usage: check_floors.py [ROOT]   (ROOT: the repository; default: two levels above this file)
Exit 0: no upward include. Exit 1: one line per upward include, file:line and the two floors.
"""
import os
import re
import sys

# Lowest first. A folder's subfolders share its floor (src/formats/nvfp4/, export/modelopt/, ...).
FLOORS = [
    "src/core", "src/io", "src/model", "src/formats", "src/tensor", "src/recipe",
    "plugins", "calib", "export", "app/run", "app/compare", "app/cli", "bench",
]
GROUND = "src/recipe"  # a src/ folder not named above is ground floor (its top)
SOURCE_DIRS = ["src", "plugins", "calib", "export", "app", "bench"]
EXTENSIONS = (".h", ".hpp", ".cpp", ".cc", ".cu", ".cuh")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def floor_of(rel):
    """The floor name of a repository-relative path, or None outside the floors."""
    best = None
    for f in FLOORS:
        if (rel == f or rel.startswith(f + "/")) and (best is None or len(f) > len(best)):
            best = f
    if best is None and rel.startswith("src/"):
        best = GROUND
    return best


def resolve(root, including_rel, target):
    for base in (os.path.dirname(including_rel), "src", ""):
        rel = os.path.normpath(os.path.join(base, target))
        if os.path.isfile(os.path.join(root, rel)):
            return rel
    return None


def source_files(root):
    for top in SOURCE_DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith(EXTENSIONS):
                    yield os.path.relpath(os.path.join(dirpath, name), root)


def upward_includes(root):
    rank = {f: i for i, f in enumerate(FLOORS)}
    found = []
    for rel in source_files(root):
        own = floor_of(rel)
        if own is None:
            continue
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                target = resolve(root, rel, m.group(1))
                other = floor_of(target) if target else None
                if other is not None and rank[other] > rank[own]:
                    found.append(f"{rel}:{lineno}: floor {own} includes \"{m.group(1)}\" of floor {other}, above it")
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    root = os.path.abspath(root)
    found = upward_includes(root)
    for line in found:
        print(line)
    if found:
        print(f"check_floors: {len(found)} upward includes (floors, lowest first: {' < '.join(FLOORS)})")
        return 1
    print(f"check_floors: no upward include in {', '.join(SOURCE_DIRS)} under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
