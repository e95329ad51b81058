#!/usr/bin/env python3
"""Token windows shared by every tool of the head-to-head, packed the way `moeq calibrate` packs text.

moeq (calib/dataset.cpp): documents in file order, each encoded with the tokenizer (no BOS for Qwen),
the EOS of tokenizer_config.json appended, concatenated, the first N x S ids cut into rows.
Writes OUT.npy (for `moeq calibrate --data`) and OUT.safetensors (tensor `ids` [N, S] int64, for
`moeq compare --eval-ids` and the Python tools).

Usage: make_ids.py MODEL_DIR DATA.jsonl N S OUT_STEM
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer


def pack(model_dir, data, n, s):
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    cfg = json.load(open(os.path.join(model_dir, "tokenizer_config.json")))
    eos = tok.token_to_id(cfg["eos_token"]) if isinstance(cfg.get("eos_token"), str) else None
    ids, docs = [], 0
    for line in open(data):
        if len(ids) >= n * s:
            break
        d = tok.encode(json.loads(line)["text"]).ids
        if eos is not None and (not d or d[-1] != eos):
            d.append(eos)
        ids += d
        docs += 1
    if len(ids) < n * s:
        sys.exit(f"{data}: {len(ids)} tokens, fewer than {n} x {s}")
    return torch.tensor(ids[: n * s], dtype=torch.int64).view(n, s), len(ids), docs


def main():
    model_dir, data, n, s, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    ids, have, docs = pack(model_dir, data, n, s)
    np.save(out + ".npy", ids.numpy())
    save_file({"ids": ids.contiguous()}, out + ".safetensors")
    print(f"{data}: packed {n} x {s} = {n * s} of {have} tokens from {docs} documents -> {out}.npy/.safetensors")


if __name__ == "__main__":
    main()
