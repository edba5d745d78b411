#!/usr/bin/env python3
"""Writes a SentencePiece ModelProto (.model) from a GGUF vocabulary, for the tokenizer benchmark.

Usage: spm_model_from_gguf.py VOCAB.gguf OUT.model

The reference SentencePiece library can then encode with exactly the vocabulary anneal
loads, without the original tokenizer.model. Standard library only: GGUF metadata is read
and the protobuf is encoded by hand (proto2 wire format, field numbers from
sentencepiece_model.proto).
"""

import os
import struct
import sys

# GGUF metadata value types.
GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL = range(8)
GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64 = range(8, 13)

SCALAR_FORMATS = {
    GGUF_U8: "<B", GGUF_I8: "<b", GGUF_U16: "<H", GGUF_I16: "<h",
    GGUF_U32: "<I", GGUF_I32: "<i", GGUF_F32: "<f", GGUF_BOOL: "<?",
    GGUF_U64: "<Q", GGUF_I64: "<q", GGUF_F64: "<d",
}

# sentencepiece_model.proto field numbers (the ones this writer sets).
MODEL_PIECES, MODEL_TRAINER_SPEC, MODEL_NORMALIZER_SPEC = 1, 2, 3
PIECE_PIECE, PIECE_SCORE, PIECE_TYPE = 1, 2, 3
TRAINER_MODEL_TYPE, TRAINER_VOCAB_SIZE = 3, 4
TRAINER_BYTE_FALLBACK = 35
TRAINER_UNK_ID, TRAINER_BOS_ID, TRAINER_EOS_ID, TRAINER_PAD_ID = 40, 41, 42, 43
NORM_NAME, NORM_CHARSMAP, NORM_ADD_DUMMY_PREFIX = 1, 2, 3
NORM_REMOVE_EXTRA_WS, NORM_ESCAPE_WS = 4, 5
MODEL_TYPE_BPE = 2

# GGUF token types and SentencePiece piece types share numbering 1..6
# (normal, unknown, control, user-defined, unused, byte); GGUF's 0 (undefined) maps to normal.
VALID_PIECE_TYPES = {1, 2, 3, 4, 5, 6}

WIRE_VARINT, WIRE_FIXED32, WIRE_LEN = 0, 5, 2


class GGUFError(Exception):
    pass


class Reader:
    def __init__(self, data, path):
        self.data = data
        self.pos = 0
        self.path = path

    def take(self, n, what):
        if n < 0 or self.pos + n > len(self.data):
            raise GGUFError(f"{self.path}: truncated reading {what} at byte {self.pos}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def scalar(self, t, what):
        fmt = SCALAR_FORMATS[t]
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what):
        n = self.scalar(GGUF_U64, what + " length")
        return self.take(n, what)

    def value(self, t, key):
        if t in SCALAR_FORMATS:
            return self.scalar(t, key)
        if t == GGUF_STRING:
            return self.string(key)
        if t == GGUF_ARRAY:
            et = self.scalar(GGUF_U32, key + " element type")
            n = self.scalar(GGUF_U64, key + " element count")
            if et == GGUF_ARRAY:
                raise GGUFError(f"{self.path}: nested array in key {key}")
            if et in SCALAR_FORMATS:
                size = struct.calcsize(SCALAR_FORMATS[et])
                raw = self.take(n * size, key)
                return list(struct.unpack("<%d%s" % (n, SCALAR_FORMATS[et][1]), raw))
            if et == GGUF_STRING:
                return [self.string(key) for _ in range(n)]
            raise GGUFError(f"{self.path}: key {key} has unknown element type {et}")
        raise GGUFError(f"{self.path}: key {key} has unknown value type {t} at byte {self.pos}")


def read_gguf_metadata(path):
    with open(path, "rb") as f:
        data = f.read()
    r = Reader(data, path)
    if r.take(4, "magic") != b"GGUF":
        raise GGUFError(f"{path}: not a GGUF file (bad magic)")
    version = r.scalar(GGUF_U32, "version")
    if version not in (2, 3):
        raise GGUFError(f"{path}: unsupported GGUF version {version}")
    r.scalar(GGUF_U64, "tensor count")
    n_kv = r.scalar(GGUF_U64, "metadata count")
    meta = {}
    for _ in range(n_kv):
        key = r.string("metadata key").decode("utf-8", "replace")
        t = r.scalar(GGUF_U32, key + " type")
        meta[key] = r.value(t, key)
    return meta


def varint(v):
    if v < 0:
        v &= (1 << 64) - 1  # proto2 int32/int64 negatives are 10-byte two's complement
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint((field << 3) | wire)


def f_varint(field, v):
    return key(field, WIRE_VARINT) + varint(int(v))


def f_float(field, v):
    return key(field, WIRE_FIXED32) + struct.pack("<f", v)


def f_bytes(field, b):
    return key(field, WIRE_LEN) + varint(len(b)) + b


def build_model(meta, path):
    model = meta.get("tokenizer.ggml.model")
    if model != b"llama":
        raise GGUFError(f"{path}: tokenizer.ggml.model is {model!r}, need 'llama' (SentencePiece)")
    tokens = meta.get("tokenizer.ggml.tokens")
    if not tokens:
        raise GGUFError(f"{path}: missing key tokenizer.ggml.tokens")
    n = len(tokens)
    scores = meta.get("tokenizer.ggml.scores", [0.0] * n)
    types = meta.get("tokenizer.ggml.token_type", [1] * n)
    if len(scores) != n or len(types) != n:
        raise GGUFError(f"{path}: tokenizer.ggml.scores/token_type length differs from tokens ({n})")
    add_prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", True))

    def special(name, default):
        v = meta.get("tokenizer.ggml." + name, default)
        if v is not None and v != -1 and not (0 <= v < n):
            raise GGUFError(f"{path}: tokenizer.ggml.{name} = {v} outside the vocabulary ({n})")
        return v

    unk = special("unknown_token_id", None)
    if unk is None:
        unk = next((i for i, t in enumerate(types) if t == 2), None)
    if unk is None:
        raise GGUFError(f"{path}: no unknown token (SentencePiece needs one)")
    bos = special("bos_token_id", -1)
    eos = special("eos_token_id", -1)
    pad = special("padding_token_id", -1)

    out = bytearray()
    for i, (text, score, t) in enumerate(zip(tokens, scores, types)):
        t = 1 if t == 0 else t
        if t not in VALID_PIECE_TYPES:
            raise GGUFError(f"{path}: token {i} has token_type {t}")
        piece = f_bytes(PIECE_PIECE, text) + f_float(PIECE_SCORE, score)
        if t != 1:  # NORMAL is the proto default
            piece += f_varint(PIECE_TYPE, t)
        out += f_bytes(MODEL_PIECES, piece)

    trainer = (f_varint(TRAINER_MODEL_TYPE, MODEL_TYPE_BPE) + f_varint(TRAINER_VOCAB_SIZE, n)
               + f_varint(TRAINER_BYTE_FALLBACK, 1) + f_varint(TRAINER_UNK_ID, unk)
               + f_varint(TRAINER_BOS_ID, bos) + f_varint(TRAINER_EOS_ID, eos)
               + f_varint(TRAINER_PAD_ID, pad))
    out += f_bytes(MODEL_TRAINER_SPEC, trainer)

    # What Llama's own tokenizer.model carries: no normalization table, the dummy prefix,
    # whitespace kept as is but escaped to U+2581.
    normalizer = (f_bytes(NORM_NAME, b"identity") + f_bytes(NORM_CHARSMAP, b"")
                  + f_varint(NORM_ADD_DUMMY_PREFIX, add_prefix)
                  + f_varint(NORM_REMOVE_EXTRA_WS, 0) + f_varint(NORM_ESCAPE_WS, 1))
    out += f_bytes(MODEL_NORMALIZER_SPEC, normalizer)
    return bytes(out), n


def main(argv):
    if len(argv) != 3:
        print("usage: spm_model_from_gguf.py VOCAB.gguf OUT.model", file=sys.stderr)
        return 2
    src, dst = argv[1], argv[2]
    try:
        meta = read_gguf_metadata(src)
        blob, n = build_model(meta, src)
    except (OSError, GGUFError) as e:
        print(f"spm_model_from_gguf: {e}", file=sys.stderr)
        return 1
    tmp = dst + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, dst)
    except OSError as e:
        print(f"spm_model_from_gguf: writing {dst}: {e}", file=sys.stderr)
        return 1
    print(f"spm_model_from_gguf: {n} pieces -> {dst} ({len(blob)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
