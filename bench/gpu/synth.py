#!/usr/bin/env python3
"""Random-weight models for bench/gpu-check.sh, shaped like real ones.

The GPU machine is reached through a 64 MiB copy of the tree and has no network, so the
real weights (SmolLM2 98 MB, MiniLM 91 MB, whisper tiny.en 78 MB) cannot travel. What
travels is a *skeleton* of each, taken here from the default models: the GGUF
tokenizer and chat template, the BERT tokenizer, config and tensor table, the whisper
header, mel filters, vocabulary and tensor table (about 1 MB compressed). There the
same files are rebuilt with random weights of sane magnitude, plus llama-shaped chat
models of any size, which are what a memory-bandwidth measurement needs (speed does not
depend on the values). The output is gibberish; loading, offload, VRAM and tokens/s are
real.

usage: synth.py extract MODELS_DIR SKELETON_DIR          (here; stdlib only)
       synth.py make SKELETON_DIR OUT_DIR [--chat NAME=SHAPE ...]   (there; stdlib only)

SHAPE is `n_embd,n_layer,n_head,n_head_kv,n_ff,TYPE` with TYPE q4_0, q8_0 or f16; see
CHAT_SHAPES for the defaults.
"""

import json
import os
import pathlib
import struct
import sys

# Chat models made by `make` unless --chat says otherwise (name: shape). `small` is
# SmolLM2-135M's shape, `mid-a`/`mid-b` TinyLlama-1.1B's (Q8_0, ~1.2 GB each: two do not
# fit a 2 GiB budget), `big` Llama-3-8B's body on SmolLM2's vocabulary (Q4_0, ~4.2 GB).
CHAT_SHAPES = {
    "synth-small": "576,30,9,3,1536,q4_0",
    "synth-mid-a": "2048,22,32,4,5632,q8_0",
    "synth-mid-b": "2048,22,32,4,5632,q8_0",
    "synth-big": "4096,32,32,8,14336,q4_0",
}

GGUF_SOURCE = "SmolLM2-135M-Instruct-Q4_1.gguf"
BERT_SOURCE = "all-MiniLM-L6-v2"
WHISPER_SOURCE = "whisper-tiny.en.bin"

# ggml type ids and (block elements, block bytes).
GGML = {"f32": (0, 1, 4), "f16": (1, 1, 2), "q4_0": (2, 32, 18), "q8_0": (8, 32, 34)}


# --- GGUF reading (extract) -------------------------------------------------------------

class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        vals = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals[0] if len(vals) == 1 else vals

    def string(self):
        n = self.take("Q")
        s = self.data[self.pos:self.pos + n].decode("utf-8", "replace")
        self.pos += n
        return s

    SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def value(self, vtype):
        if vtype == 8:
            return self.string()
        if vtype == 9:
            itype, n = self.take("I"), self.take("Q")
            return [self.value(itype) for _ in range(n)]
        return self.take(self.SCALAR[vtype])


def gguf_kv_spans(path):
    """{key: raw bytes of the whole KV entry} for every metadata entry of a GGUF file."""
    data = open(path, "rb").read(64 << 20)  # metadata sits at the front
    r = Reader(data)
    if data[:4] != b"GGUF":
        raise SystemExit(f"{path}: not a GGUF file")
    r.pos = 4
    _version, _n_tensors, n_kv = r.take("I"), r.take("Q"), r.take("Q")
    spans = {}
    for _ in range(n_kv):
        start = r.pos
        key = r.string()
        r.value(r.take("I"))
        spans[key] = data[start:r.pos]
    return spans


def whisper_skeleton(path):
    """(the bytes before the first tensor, [(name, dims, ggml type)]) of a whisper.cpp file."""
    data = open(path, "rb").read()
    r = Reader(data)
    if r.take("I") != 0x67676D6C:
        raise SystemExit(f"{path}: not a whisper.cpp ggml file")
    hp = [r.take("i") for _ in range(11)]
    n_mel, n_fft = r.take("i"), r.take("i")
    r.pos += 4 * n_mel * n_fft
    n_vocab = r.take("i")
    for _ in range(n_vocab):
        length = r.take("I")
        r.pos += length
    prefix = data[:r.pos]
    tensors = []
    while r.pos < len(data):
        n_dims, name_len, ttype = r.take("i"), r.take("i"), r.take("i")
        dims = [r.take("i") for _ in range(n_dims)]
        name = data[r.pos:r.pos + name_len].decode()
        r.pos += name_len
        count = 1
        for d in dims:
            count *= d
        if ttype not in (0, 1):
            raise SystemExit(f"{path}: tensor {name} has type {ttype}; only f32/f16 files are supported")
        r.pos += count * (4 if ttype == 0 else 2)
        tensors.append([name, dims, ttype])
    return prefix, tensors, hp


def extract(models, out):
    out.mkdir(parents=True, exist_ok=True)
    spans = gguf_kv_spans(models / GGUF_SOURCE)
    keep = {k: v for k, v in spans.items() if k.startswith("tokenizer.")}
    with open(out / "chat-kv.bin", "wb") as f:
        f.write(struct.pack("<Q", len(keep)))
        for raw in keep.values():
            f.write(raw)
    bert = models / BERT_SOURCE
    (out / "bert").mkdir(exist_ok=True)
    for name in ("config.json", "tokenizer.json"):
        (out / "bert" / name).write_bytes((bert / name).read_bytes())
    with open(bert / "model.safetensors", "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        (out / "bert" / "header.json").write_bytes(f.read(n))
    prefix, tensors, hp = whisper_skeleton(models / WHISPER_SOURCE)
    (out / "whisper-prefix.bin").write_bytes(prefix)
    (out / "whisper-tensors.json").write_text(json.dumps(tensors))
    print(f"skeleton in {out}: {len(keep)} tokenizer keys, BERT {len(json.loads((out / 'bert/header.json').read_text())) - 1} "
          f"tensors, whisper {len(tensors)} tensors (hparams {hp})")


# --- writing (make) ---------------------------------------------------------------------

POOL = 64 << 20  # random bytes shared by every tensor: values need not differ, only exist


def pool_for(kind):
    """A buffer of random values of one encoding, magnitude ~0.01-0.03 (all finite)."""
    buf = bytearray(os.urandom(POOL))
    if kind == "f16":  # sign, exponent 9 (2^-6), 2 random mantissa bits
        buf[1::2] = buf[1::2].translate(bytes((b & 0x83) | 0x24 for b in range(256)))
    elif kind == "f32":  # sign, exponent 121 (2^-6)
        buf[3::4] = buf[3::4].translate(bytes((b & 0x80) | 0x3C for b in range(256)))
        buf[2::4] = buf[2::4].translate(bytes(b | 0x80 for b in range(256)))
    else:  # block quants: random codes, one fixed f16 scale per block
        _, _, size = GGML[kind]
        n = POOL // size
        buf = buf[:n * size]
        scale = struct.pack("<e", 0.004 if kind == "q4_0" else 0.0003)
        buf[0::size] = scale[:1] * n
        buf[1::size] = scale[1:] * n
    return bytes(buf)


POOLS = {}


def random_bytes(kind, count):
    if kind not in POOLS:
        POOLS[kind] = pool_for(kind)
    pool = POOLS[kind]
    out = bytearray()
    while len(out) < count:
        out += pool[:count - len(out)]
    return out


def ones(kind, count):
    return struct.pack(f"<{count}" + ("f" if kind == "f32" else "e"), *([1.0] * count))


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, vtype, value):
    fmt = {4: "I", 5: "i", 6: "f", 7: "?"}[vtype] if vtype != 8 else None
    body = gguf_string(value) if vtype == 8 else struct.pack("<" + fmt, value)
    return gguf_string(key) + struct.pack("<I", vtype) + body


def make_chat(skeleton, path, shape):
    n_embd, n_layer, n_head, n_kv, n_ff, qtype = shape.split(",")
    n_embd, n_layer, n_head, n_kv, n_ff = map(int, (n_embd, n_layer, n_head, n_kv, n_ff))
    raw = (skeleton / "chat-kv.bin").read_bytes()
    n_tok_kv = struct.unpack_from("<Q", raw)[0]
    spans = gguf_kv_spans_from_raw(raw[8:], n_tok_kv)
    n_vocab = vocab_size(spans["tokenizer.ggml.tokens"])
    head_dim = n_embd // n_head
    kvs = [
        gguf_kv("general.architecture", 8, "llama"),
        gguf_kv("general.name", 8, path.stem),
        gguf_kv("general.file_type", 4, {"q4_0": 2, "q8_0": 7, "f16": 1}[qtype]),
        gguf_kv("llama.context_length", 4, 8192),
        gguf_kv("llama.embedding_length", 4, n_embd),
        gguf_kv("llama.block_count", 4, n_layer),
        gguf_kv("llama.feed_forward_length", 4, n_ff),
        gguf_kv("llama.attention.head_count", 4, n_head),
        gguf_kv("llama.attention.head_count_kv", 4, n_kv),
        gguf_kv("llama.rope.dimension_count", 4, head_dim),
        gguf_kv("llama.rope.freq_base", 6, 100000.0),
        gguf_kv("llama.attention.layer_norm_rms_epsilon", 6, 1e-5),
        gguf_kv("llama.vocab_size", 4, n_vocab),
    ] + list(spans.values())
    tensors = [("token_embd.weight", [n_embd, n_vocab], qtype), ("output_norm.weight", [n_embd], "f32"),
               ("output.weight", [n_embd, n_vocab], qtype)]
    for i in range(n_layer):
        b = f"blk.{i}."
        tensors += [(b + "attn_norm.weight", [n_embd], "f32"), (b + "ffn_norm.weight", [n_embd], "f32"),
                    (b + "attn_q.weight", [n_embd, n_embd], qtype),
                    (b + "attn_k.weight", [n_embd, n_kv * head_dim], qtype),
                    (b + "attn_v.weight", [n_embd, n_kv * head_dim], qtype),
                    (b + "attn_output.weight", [n_embd, n_embd], qtype),
                    (b + "ffn_gate.weight", [n_embd, n_ff], qtype), (b + "ffn_up.weight", [n_embd, n_ff], qtype),
                    (b + "ffn_down.weight", [n_ff, n_embd], qtype)]
    align = 32
    infos, sizes, offset = bytearray(), [], 0
    for name, dims, t in tensors:
        tid, per, size = GGML[t]
        count = 1
        for d in dims:
            count *= d
        nbytes = count // per * size
        infos += gguf_string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", tid, offset)
        sizes.append((t, count, nbytes))
        offset += (nbytes + align - 1) // align * align
    with open(path, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)))
        for kv in kvs:
            f.write(kv)
        f.write(infos)
        f.write(b"\0" * (-f.tell() % align))
        for (t, count, nbytes), (name, _, _) in zip(sizes, tensors):
            f.write(ones("f32", count) if t == "f32" else random_bytes(t, nbytes))
            f.write(b"\0" * (-nbytes % align))
    return path.stat().st_size


def gguf_kv_spans_from_raw(raw, n):
    r, spans = Reader(raw), {}
    for _ in range(n):
        start = r.pos
        key = r.string()
        r.value(r.take("I"))
        spans[key] = raw[start:r.pos]
    return spans


def vocab_size(span):
    r = Reader(span)
    r.string()
    r.take("I")  # array
    r.take("I")  # of strings
    return r.take("Q")


def make_bert(skeleton, out):
    src = skeleton / "bert"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json"):
        (out / name).write_bytes((src / name).read_bytes())
    header_raw = (src / "header.json").read_bytes()
    header = json.loads(header_raw)
    entries = sorted(((k, v) for k, v in header.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0])
    with open(out / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(header_raw)) + header_raw)
        for name, info in entries:
            if info["dtype"] == "I64":  # position_ids: 0, 1, 2, ...
                count = (info["data_offsets"][1] - info["data_offsets"][0]) // 8
                f.write(struct.pack(f"<{count}q", *range(count)))
                continue
            if info["dtype"] not in ("F32", "F16"):
                raise SystemExit(f"BERT tensor {name}: dtype {info['dtype']} not supported")
            kind = info["dtype"].lower()
            start, end = info["data_offsets"]
            count = (end - start) // (4 if kind == "f32" else 2)
            if name.endswith(("LayerNorm.weight", "LayerNorm.gamma")):
                f.write(ones(kind, count))
            elif name.endswith(("bias", "beta")):
                f.write(b"\0" * (end - start))
            else:
                f.write(random_bytes(kind, end - start))
    return sum(p.stat().st_size for p in out.iterdir())


def make_whisper(skeleton, path):
    tensors = json.loads((skeleton / "whisper-tensors.json").read_text())
    with open(path, "wb") as f:
        f.write((skeleton / "whisper-prefix.bin").read_bytes())
        for name, dims, ttype in tensors:
            raw = name.encode()
            f.write(struct.pack(f"<iii{len(dims)}i", len(dims), len(raw), ttype, *dims) + raw)
            count = 1
            for d in dims:
                count *= d
            kind = "f32" if ttype == 0 else "f16"
            if name.endswith(("ln.weight", "ln_post.weight")):
                f.write(ones(kind, count))
            elif name.endswith("bias"):
                f.write(b"\0" * (count * (4 if ttype == 0 else 2)))
            else:
                f.write(random_bytes(kind, count * (4 if ttype == 0 else 2)))
    return path.stat().st_size


def make(skeleton, out, shapes):
    out.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, shape in shapes.items():
        made[name] = make_chat(skeleton, out / f"{name}.gguf", shape)
    made[BERT_SOURCE] = make_bert(skeleton, out / BERT_SOURCE)
    made[WHISPER_SOURCE[:-4]] = make_whisper(skeleton, out / WHISPER_SOURCE)
    print(json.dumps(made))


def main(argv):
    if len(argv) >= 3 and argv[0] == "extract":
        extract(pathlib.Path(argv[1]), pathlib.Path(argv[2]))
    elif len(argv) >= 3 and argv[0] == "make":
        shapes = dict(CHAT_SHAPES)
        rest = argv[3:]
        if rest:
            shapes = {}
            for spec in rest:
                if spec == "--chat":
                    continue
                name, _, shape = spec.partition("=")
                shapes[name] = shape or CHAT_SHAPES[name]
        make(pathlib.Path(argv[1]), pathlib.Path(argv[2]), shapes)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
