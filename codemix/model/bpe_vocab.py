"""Byte-level BPE (GPT-2 style) as a `seqio.Vocabulary`, rebuilt from a GGUF.

How encoding works (it follows llama.cpp's `gpt2`-model tokenizer, so ids match
the ones llama.cpp gives the same GGUF):

1. Special tokens (GGUF token types CONTROL, USER_DEFINED and UNKNOWN, e.g.
   `<|im_start|>`) are cut out of the text first, longest first, and each
   becomes its own id; they are never split or merged with their neighbours.
2. The remaining fragments are pre-tokenized by the regexes named by the GGUF's
   `tokenizer.ggml.pre` (see `PRE_TOKENIZERS`). Each regex splits every piece
   into its matches and the gaps between them. For SmolLM2 (`smollm`) the first
   regex isolates every digit, the second is GPT-2's word splitter.
3. Each piece's UTF-8 bytes are mapped to printable characters by GPT-2's
   byte-to-unicode table, and pairs of adjacent symbols are merged by rank
   (lowest rank first, leftmost first) until no ranked pair is left. Symbols
   not in the vocabulary (impossible for a complete byte-level vocabulary) fall
   back to one id per byte.

Decoding concatenates the token strings, maps the characters back to bytes and
decodes UTF-8 (invalid sequences become U+FFFD). Special tokens decode to
their text, so `decode(encode(s)) == s` for any `s`.

The file format (written by `codemix import`, read by `BPEVocabulary(path)`),
its checks and its conversion to and from an HF `tokenizer.json` are in
codemix/model/bpe_spec.py. An imported model directory keeps it as `DIR/bpe_vocab.json`, and `DIR/model.gin`
binds it for the evaluation suite (codemix/eval/loading.py convention):

    import codemix.model.bpe_vocab
    MODEL_DIR = '/where/it/was/written'   # `codemix eval` rebinds it to DIR
    eval_vocabulary.vocabulary = @BPEVocabulary()
    BPEVocabulary.path = %MODEL_DIR      # a directory means DIR/bpe_vocab.json

seqio reserves id 0 for padding in its feature converters; `pad_id` is 0 here
too (for SmolLM2 that id is `<|endoftext|>`, which packing never needs to tell
apart from padding because codemix marks padding with segment id 0).
"""
from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence

import numpy as np
import regex
import seqio
import tensorflow as tf

import gin
from codemix.model.bpe_spec import (  # noqa: F401  (the spec's names are importable from here too)
    FORMAT,
    PRE_TOKENIZERS,
    SPECIAL_TYPES,
    VOCAB_FILE,
    BPEVocabularyError,
    check_spec,
    hf_tokenizer_from_spec,
    spec_from_hf_tokenizer,
)


@functools.lru_cache(maxsize=1)
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's table: printable bytes stand for themselves, the other 68 bytes
    take the code points 256, 257, ... in byte order, so no token contains
    whitespace or control characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _split_keep_gaps(pattern: regex.Pattern, piece: str) -> list[str]:
    out, pos = [], 0
    for m in pattern.finditer(piece):
        if m.start() > pos:
            out.append(piece[pos:m.start()])
        if m.end() > m.start():
            out.append(m.group())
        pos = m.end()
    if pos < len(piece):
        out.append(piece[pos:])
    return out


def _text(value) -> str:
    """A numpy_function argument (0-d object array of bytes) as str."""
    if isinstance(value, np.ndarray):
        value = value.item()
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@gin.configurable
class BPEVocabulary(seqio.Vocabulary):
    """Byte-level BPE vocabulary (see the module docstring for the algorithm).

    Build it from a file written by `save` (`BPEVocabulary(path)`) or from the
    fields of a GGUF (`BPEVocabulary.from_spec(spec)`).
    """

    def __init__(self, path: str | None = None, spec: dict | None = None, extra_ids: int = 0):
        """Args:
          path: a `bpe_vocab.json` file (format in the module docstring), or a
            directory that holds one (an imported model directory).
          spec: the same content as a dict (wins over `path`).
          extra_ids: seqio extra ids appended after the vocabulary (default none).
        """
        if spec is None:
            if path is None:
                raise BPEVocabularyError("BPEVocabulary needs a path to a bpe_vocab.json file or a spec dict.")
            if os.path.isdir(path):
                path = os.path.join(path, VOCAB_FILE)
            if not os.path.isfile(path):
                raise BPEVocabularyError(
                    f"BPE vocabulary file {path!r} does not exist; it is written by `codemix import` "
                    f"as <model dir>/bpe_vocab.json."
                )
            with open(path, encoding="utf-8") as f:
                spec = json.load(f)
        self._spec = check_spec(spec, path)
        self._path = path
        tokens = spec["tokens"]
        self._tokens: list[str] = tokens
        self._token_to_id = {t: i for i, t in enumerate(tokens)}
        self._ranks = {}
        for rank, merge in enumerate(spec["merges"]):
            left, sep, right = merge.partition(" ")
            if not sep:
                raise BPEVocabularyError(f"merge #{rank} {merge!r} is not two symbols separated by a space.")
            self._ranks[(left, right)] = rank
        types = spec.get("token_types") or [1] * len(tokens)
        specials = [tokens[i] for i, t in enumerate(types) if t in SPECIAL_TYPES and tokens[i]]
        # Longest first, as llama.cpp partitions the text.
        self._specials = sorted(specials, key=lambda s: -len(s.encode("utf-8")))
        self._special_ids = {tokens[i]: i for i, t in enumerate(types) if t in SPECIAL_TYPES}
        self._patterns = [regex.compile(p) for p in PRE_TOKENIZERS[spec["pre"]]]
        self._b2u = byte_to_unicode()
        self._u2b = {u: b for b, u in self._b2u.items()}
        self._byte_ids = [self._token_to_id.get(self._b2u[b]) for b in range(256)]
        self._eos, self._bos, self._unk = spec.get("eos_id"), spec.get("bos_id"), spec.get("unk_id")
        self._word_cache: dict[str, tuple[int, ...]] = {}
        super().__init__(extra_ids=extra_ids)

    @classmethod
    def from_spec(cls, spec: dict) -> BPEVocabulary:
        return cls(spec=spec)

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self._spec, f, ensure_ascii=False)

    @property
    def spec(self) -> dict:
        return self._spec

    # --- seqio.Vocabulary interface -------------------------------------------

    @property
    def _base_vocab_size(self) -> int:
        return len(self._tokens)

    @property
    def eos_id(self) -> int | None:
        return self._eos

    @property
    def bos_id(self) -> int | None:
        return self._bos

    @property
    def unk_id(self) -> int | None:
        return self._unk

    def _encode(self, s: str) -> list[int]:
        ids: list[int] = []
        for fragment, special in self._partition(s):
            if special:
                ids.append(self._special_ids[fragment])
                continue
            pieces = [fragment]
            for pattern in self._patterns:
                pieces = [p for piece in pieces for p in _split_keep_gaps(pattern, piece)]
            for piece in pieces:
                ids.extend(self._encode_word(piece))
        return ids

    def _decode(self, ids: Sequence[int]) -> str:
        out = bytearray()
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self._tokens):
                continue  # seqio extra ids have no text
            token = self._tokens[i]
            if self._special_ids.get(token) == i:
                out.extend(token.encode("utf-8"))
                continue
            for c in token:
                b = self._u2b.get(c)
                # A character outside the byte table (not in byte-level vocabularies) is its own text.
                out.extend(c.encode("utf-8") if b is None else (b,))
        return out.decode("utf-8", errors="replace")

    def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
        def encode_one(x):
            return tf.numpy_function(
                lambda b: np.asarray(self._encode(_text(b)), np.int32), [x], tf.int32, stateful=False
            )

        s = tf.convert_to_tensor(s, tf.string)
        if s.shape.rank == 0:
            out = encode_one(s)
            out.set_shape([None])
            return out
        return tf.map_fn(
            lambda x: tf.RaggedTensor.from_tensor(tf.reshape(encode_one(x), [1, -1]))[0],
            s, fn_output_signature=tf.RaggedTensorSpec([None], tf.int32),
        )

    def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
        def decode_one(x):
            out = tf.numpy_function(
                lambda a: np.asarray(self._decode(a.tolist()).encode("utf-8"), dtype=object), [x], tf.string,
                stateful=False,
            )
            out.set_shape([])
            return out

        ids = tf.convert_to_tensor(ids, tf.int32)
        if ids.shape.rank == 1:
            return decode_one(ids)
        return tf.map_fn(decode_one, ids, fn_output_signature=tf.TensorSpec([], tf.string))

    def __eq__(self, other) -> bool:
        if not isinstance(other, BPEVocabulary):
            return False
        return (self._tokens == other._tokens and self._spec["merges"] == other._spec["merges"]
                and self._spec["pre"] == other._spec["pre"] and self.extra_ids == other.extra_ids)

    def __hash__(self) -> int:
        return hash((len(self._tokens), self._spec["pre"], self.extra_ids))

    # --- the algorithm ----------------------------------------------------------

    def _partition(self, text: str):
        """(fragment, is_special) pairs in order: special tokens cut out longest first."""
        parts: list[tuple[str, bool]] = [(text, False)]
        for special in self._specials:
            if special not in text:
                continue
            new_parts = []
            for frag, is_special in parts:
                if is_special or special not in frag:
                    new_parts.append((frag, is_special))
                    continue
                pieces = frag.split(special)
                for k, piece in enumerate(pieces):
                    if k:
                        new_parts.append((special, True))
                    if piece:
                        new_parts.append((piece, False))
            parts = new_parts
        return parts

    def _encode_word(self, word: str) -> tuple[int, ...]:
        cached = self._word_cache.get(word)
        if cached is not None:
            return cached
        symbols = [self._b2u[b] for b in word.encode("utf-8")]
        while len(symbols) > 1:
            best, best_rank = -1, None
            for k in range(len(symbols) - 1):
                rank = self._ranks.get((symbols[k], symbols[k + 1]))
                if rank is not None and (best_rank is None or rank < best_rank):
                    best, best_rank = k, rank
            if best < 0:
                break
            pair = (symbols[best], symbols[best + 1])
            merged, k = [], 0
            while k < len(symbols):  # merge every occurrence, left to right
                if k < len(symbols) - 1 and (symbols[k], symbols[k + 1]) == pair:
                    merged.append(symbols[k] + symbols[k + 1])
                    k += 2
                else:
                    merged.append(symbols[k])
                    k += 1
            symbols = merged
        ids: list[int] = []
        for sym in symbols:
            tid = self._token_to_id.get(sym)
            if tid is not None:
                ids.append(tid)
            else:  # byte fallback
                for c in sym:
                    bid = self._byte_ids[self._u2b[c]]
                    if bid is None:
                        raise BPEVocabularyError(f"byte {self._u2b[c]} has no token in this vocabulary.")
                    ids.append(bid)
        result = tuple(ids)
        if len(self._word_cache) < 200_000:
            self._word_cache[word] = result
        return result
