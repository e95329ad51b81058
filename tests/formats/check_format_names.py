#!/usr/bin/env python3
"""Fails when a quantization format's name is typed as a string literal outside its home.

A format's facts live in its folder (src/formats/<name>/, its FormatTraits); the rest of the
code asks the traits. Outside src/formats/, a format name may appear only in recipes, docs and
tests. A line that names a *source checkpoint's* vocabulary (a Hugging Face quant_method, a
source format such as "mxfp4" blocks/scales) is not a format of moeq's registry and says so
with the marker `format-name-ok` in a comment on that line.

usage: check_format_names.py SOURCE_DIR   (prints file:line for each hit, exit 1 if any)
"""
import os
import re
import sys

FORMATS = ("nvfp4", "nf4", "fp4", "fp8", "mxfp4", "int4", "int8")
LITERAL = re.compile(r'"(%s)"' % "|".join(FORMATS))
ALLOWED_TOP = ("recipes", "docs", "tests", "shared")  # may name formats (shared/: data, not code)
HOME = os.path.join("src", "formats")
EXTENSIONS = (".cpp", ".h", ".cu", ".cuh", ".hpp")
MARKER = "format-name-ok"


def scanned_tops(root):
    """Every top-level folder of the tree but the allowed ones, build trees and hidden ones, so a
    folder added later (the roof of issue 13) is checked too."""
    for top in sorted(os.listdir(root)):
        if top in ALLOWED_TOP or top.startswith((".", "build")) or not os.path.isdir(os.path.join(root, top)):
            continue
        yield top


def hits(root):
    for top in scanned_tops(root):
        for d, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = sorted(x for x in dirs if not x.startswith("."))
            rel_dir = os.path.relpath(d, root)
            if rel_dir == HOME or rel_dir.startswith(HOME + os.sep):
                continue
            for f in sorted(files):
                if not f.endswith(EXTENSIONS):
                    continue
                path = os.path.join(d, f)
                with open(path, encoding="utf-8", errors="replace") as fh:
                    for n, line in enumerate(fh, 1):
                        if LITERAL.search(line) and MARKER not in line:
                            yield "%s:%d: %s" % (os.path.relpath(path, root), n, line.strip())


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    found = list(hits(sys.argv[1]))
    for h in found:
        print(h)
    if found:
        print("%d format-name literal(s) outside src/formats/: ask the format's traits "
              "(src/formats/format_traits.h) instead" % len(found))
        return 1
    print("no format-name literals outside src/formats/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
