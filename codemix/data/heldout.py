"""Fixed held-out evaluation sets: one per data family, from its validation split.

What a set is. For each family task (text, text_hq, code_web, markup,
code_adjacent, code_synthetic) the set is the first documents of the
family's validation split (the corpus builders already hold that split out
of training by a stable hash of each document's text), taken until their
tokens (EOS included) reach `tokens_per_family`. The
selection depends only on the prepared corpus and these options, so every run
of an experiment, on every host, sees exactly the same documents; a
document's id is a hash of its (cut) text, so results pair by id.

The documents are fixed as *text*; `pack` turns them into rows for one
vocabulary, the way training rows are packed (documents + EOS concatenated,
cut into rows of `sequence_length`, positions restarting at each document,
segment ids numbering documents within a row). Unlike training, the last
row is padded (loss weight 0) so no token is dropped. A model with another
vocabulary (an imported SmolLM2) packs the same text its own way, and bits
per UTF-8 byte of that text are comparable across vocabularies.

Selection counts tokens with the configured codemix vocabulary (the embedded
default unless VocabOptions.path is set), whatever vocabulary a model uses
later: the same text is evaluated by every model.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Sequence

import numpy as np

import gin
from codemix.data.readers import DataError

POOL_FACTOR = 16
DEFAULT_FAMILIES = ("text", "text_hq", "code_web", "markup", "code_adjacent", "code_synthetic")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class HeldOutOptions:
    """Which held-out sets the trainer and `codemix eval --category perplexity` measure.

    Attributes:
      families: family task names (default: all six, whatever the run's mixture,
        so a text-only model's code BPB is measured too).
      tokens_per_family: size of each set in tokens (EOS included) of the
        configured codemix vocabulary; 4096 tokens = 16 rows of 256, so the
        six sets cost the demo's tiny model a few percent of a run's training.
      max_doc_chars: documents are cut into pieces of at most this many
        characters, each an example of its own (one long file must not be a
        set on its own; more examples give the paired bootstrap more units).
      split: the split the documents come from.
    """

    families: tuple[str, ...] = DEFAULT_FAMILIES
    tokens_per_family: int = 4096
    max_doc_chars: int = 1024
    split: str = "validation"


@dataclasses.dataclass(frozen=True)
class HeldOutDocs:
    """One family's held-out documents (vocabulary-independent)."""

    family: str
    ids: tuple[str, ...]
    texts: tuple[str, ...]

    @property
    def num_bytes(self) -> np.ndarray:
        """UTF-8 bytes of each document."""
        return np.array([len(t.encode("utf-8")) for t in self.texts], dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class PackedSet:
    """A family's documents packed into rows for one vocabulary.

    Arrays are [rows, sequence_length]; `doc` is the document index of each
    target slot (-1 on padding) and `eos` marks targets that are EOS (they
    carry no bytes of text and are left out of bits per byte).
    """

    family: str
    docs: HeldOutDocs
    decoder_input_tokens: np.ndarray
    decoder_target_tokens: np.ndarray
    decoder_segment_ids: np.ndarray
    decoder_positions: np.ndarray
    decoder_loss_weights: np.ndarray
    doc: np.ndarray
    eos: np.ndarray

    @property
    def num_rows(self) -> int:
        return int(self.decoder_target_tokens.shape[0])

    def features(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in ("decoder_input_tokens", "decoder_target_tokens",
                                               "decoder_segment_ids", "decoder_positions",
                                               "decoder_loss_weights")}


def doc_id(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _family_texts(name: str, split: str):
    """Validation texts of family task `name`, file order."""
    from codemix.data import tasks

    for ex in tasks.family_texts(name, split).as_numpy_iterator():
        yield ex["text"].decode("utf-8")


def chunks(text: str, max_chars: int) -> list[str]:
    """`text` cut into consecutive pieces of at most `max_chars` characters,
    each ending at a newline when one falls in the second half of the piece."""
    out, start = [], 0
    while start < len(text):
        end = min(start + max_chars, len(text))
        if end < len(text):
            nl = text.rfind("\n", start + max_chars // 2, end)
            if nl >= 0:
                end = nl + 1
        out.append(text[start:end])
        start = end
    return out


def check_families(families: Sequence[str]) -> None:
    from codemix.data.tasks import TASKS

    unknown = [f for f in families if f not in TASKS]
    if unknown:
        raise DataError(
            f"unknown family {unknown} in HeldOutOptions.families; known families: {sorted(TASKS)}."
        )


def select_documents(name: str, options: HeldOutOptions, count_tokens: Callable[[str], int],
                     texts=None) -> HeldOutDocs:
    """The first document pieces of `name`'s split whose tokens reach the budget (module doc)."""
    check_families([name])
    texts = _family_texts(name, options.split) if texts is None else texts
    # Read pieces until the pool holds POOL_FACTOR x the budget (or the split
    # ends), then take them in the order of their hash: a sample spread over
    # the whole pool (not only the first file's documents), the same on
    # every machine, that never reads more than a bounded prefix of a full split.
    pool: dict[str, tuple[str, int]] = {}
    available = 0
    for text in texts:
        for piece in chunks(text, options.max_doc_chars):
            n = count_tokens(piece) + 1  # + EOS
            if piece.strip() and doc_id(piece) not in pool:
                pool[doc_id(piece)] = (piece, n)
                available += n
        if available >= POOL_FACTOR * options.tokens_per_family:
            break
    chosen, ids, total = [], [], 0
    for i in sorted(pool):
        if total >= options.tokens_per_family:
            break
        piece, n = pool[i]
        chosen.append(piece)
        ids.append(i)
        total += n
    if total < options.tokens_per_family:
        raise DataError(
            f"the {options.split} split of {name!r} has {available} tokens in {len(chosen)} documents "
            f"(cut to {options.max_doc_chars} characters), fewer than "
            f"HeldOutOptions.tokens_per_family={options.tokens_per_family}; lower tokens_per_family "
            f"to at most {available}, or raise CorpusOptions.validation_fraction / local_max_bytes."
        )
    return HeldOutDocs(name, tuple(ids), tuple(chosen))


@functools.cache
def _cached_documents(name: str, options: HeldOutOptions, corpus_key: str) -> HeldOutDocs:
    from codemix.data.vocab import VOCABULARY

    del corpus_key  # part of the cache key only
    processor = VOCABULARY.tokenizer
    return select_documents(name, options, lambda t: len(processor.encode(t)))


def documents(options: HeldOutOptions | None = None) -> dict[str, HeldOutDocs]:
    """{family: its held-out documents} for the configured options and corpora."""
    from codemix.data import corpus
    from codemix.data.vocab import VOCABULARY

    options = options or HeldOutOptions()
    check_families(options.families)
    key = f"{corpus.CorpusOptions()!r}|{VOCABULARY.sentencepiece_model_file}"
    return {f: _cached_documents(f, options, key) for f in options.families}


def pack(docs: HeldOutDocs, encode: Callable[[str], Sequence[int]], eos_id: int,
         sequence_length: int, row_multiple: int = 1) -> PackedSet:
    """Rows of `sequence_length` tokens, packed like training rows (module doc).

    The number of rows is padded up to a multiple of `row_multiple` with
    all-padding rows (segment 0, weight 0), so they split evenly over a batch.
    """
    tokens, owner, is_eos = [], [], []
    for i, text in enumerate(docs.texts):
        ids = list(encode(text)) + [eos_id]
        tokens += ids
        owner += [i] * len(ids)
        is_eos += [False] * (len(ids) - 1) + [True]
    n = len(tokens)
    rows = -(-n // sequence_length)
    rows = -(-rows // row_multiple) * row_multiple
    size = rows * sequence_length
    tok = np.zeros(size, np.int32)
    doc = np.full(size, -1, np.int64)
    eos = np.zeros(size, bool)
    tok[:n], doc[:n], eos[:n] = tokens, owner, is_eos
    tok, doc, eos = (a.reshape(rows, sequence_length) for a in (tok, doc, eos))
    valid = doc >= 0
    seg = np.zeros_like(tok)
    pos = np.zeros_like(tok)
    inputs = np.zeros_like(tok)
    for r in range(rows):
        d = doc[r]
        first = d[0]
        # segments: documents within the row numbered from 1; padding 0
        seg[r] = np.where(valid[r], d - first + 1, 0)
        starts = np.r_[True, d[1:] != d[:-1]]
        idx = np.arange(sequence_length)
        last_start = np.maximum.accumulate(np.where(starts, idx, 0))
        pos[r] = np.where(valid[r], idx - last_start, 0)
        prev = np.r_[0, tok[r, :-1]]
        inputs[r] = np.where(pos[r] == 0, 0, prev)
    return PackedSet(
        family=docs.family, docs=docs, decoder_input_tokens=inputs, decoder_target_tokens=tok,
        decoder_segment_ids=seg.astype(np.int32), decoder_positions=pos.astype(np.int32),
        decoder_loss_weights=valid.astype(np.float32), doc=doc, eos=eos,
    )
