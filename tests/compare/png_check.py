"""Checks that a PNG screenshot shows a rendered page, not a blank or broken one.

usage: png_check.py SHOT.png [--expect-blank]
Decodes the PNG with zlib + numpy (no PIL on the build machine) and requires ink (pixels
that are not near-white), colour (saturated pixels: chart lines, markers, heatmap cells)
and variety (distinct colours). --expect-blank inverts the verdict: the self-test that
shows the check can fail.
"""
import struct
import sys
import zlib

import numpy as np


def decode_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path}: not a PNG")
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    if depth != 8 or ctype not in (0, 2, 4, 6) or interlace:
        raise SystemExit(f"{path}: unsupported PNG (depth {depth}, colour type {ctype}, interlace {interlace})")
    ch = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, 1 + w * ch)
    out = np.zeros((h, w * ch), dtype=np.int32)
    prev = np.zeros(w * ch, dtype=np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if f == 0:
            cur = line
        elif f == 1:  # Sub: a running sum along each channel
            cur = np.cumsum(line.reshape(w, ch), axis=0).reshape(-1) & 255
        elif f == 2:
            cur = (line + prev) & 255
        else:  # Average, Paeth: sequential in x; plain Python ints are fastest here
            ln, pv, cu = line.tolist(), prev.tolist(), [0] * (w * ch)
            for x in range(w * ch):
                a = cu[x - ch] if x >= ch else 0
                b = pv[x]
                if f == 3:
                    p = (a + b) >> 1
                else:
                    c = pv[x - ch] if x >= ch else 0
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cu[x] = (ln[x] + p) & 255
            cur = np.array(cu, dtype=np.int32)
        out[y] = cur
        prev = cur
    img = out.reshape(h, w, ch)
    if ch < 3:
        img = np.repeat(img[:, :, :1], 3, axis=2)
    return img[:, :, :3]


def main():
    path, expect_blank = sys.argv[1], "--expect-blank" in sys.argv
    img = decode_png(path)
    h, w, _ = img.shape
    ink = float((img.min(axis=2) < 200).mean())                  # text, lines, cells
    colour = float(((img.max(axis=2) - img.min(axis=2)) > 60).mean())  # saturated pixels
    distinct = len(np.unique((img // 8).reshape(-1, 3), axis=0))
    std = float(img.std())
    print(f"{path}: {w}x{h}, ink {ink:.3%}, colour {colour:.3%}, {distinct} distinct colours, std {std:.1f}")
    ok = ink > 0.02 and colour > 0.01 and distinct >= 50 and std > 10
    if expect_blank:
        print("blank page rejected, as expected" if not ok else "FAIL: a blank page passed the check")
        return 0 if not ok else 1
    print("rendered page: ok" if ok else "FAIL: the screenshot looks blank or broken")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
