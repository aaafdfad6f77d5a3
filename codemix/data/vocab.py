"""SentencePiece vocabularies that keep code intact.

Training settings and why:
  model_type=bpe                 fast to train (seconds for a few MB) and robust on code
  normalization_rule_name=identity, remove_extra_whitespaces=False, add_dummy_prefix=False
                                 text round-trips exactly, indentation included
  allow_whitespace_only_pieces   runs of spaces (indentation) become single pieces
  user_defined_symbols=\\n, \\t    newlines and tabs are tokens, not byte fallbacks
  byte_fallback=True             any byte is representable: no UNK on unseen characters
  split_digits=True              numbers are spelled digit by digit
  pad=0, eos=1, unk=2, no bos    the ids seqio expects

The training sample is drawn from a mixture's families in proportion to their
token shares (bytes stand in for tokens before a vocabulary exists), split into
pieces of at most `PIECE_BYTES` at line boundaries.

The embedded default (`VocabOptions.path=None`) is trained on the `balanced`
mixture of the local corpora on first use and cached under
~/.cache/codemix/vocab; any model path, local or gs://, can be given instead.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Iterator

import seqio
import tensorflow as tf

import gin

log = logging.getLogger(__name__)

PIECE_BYTES = 4096
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "codemix", "vocab")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class VocabOptions:
    """Which vocabulary the family tasks use.

    Attributes:
      path: SentencePiece model file (local or gs://); None = the embedded default.
      size: pieces in the embedded default (8192: trains in seconds, small embedding).
      mixture: mixture whose token shares the default is trained on.
      sample_bytes: bytes of text the default is trained on (4 MB: about a minute).
      cache_dir: where the default is cached.
    """

    path: str | None = None
    size: int = 8192
    mixture: str = "balanced"
    sample_bytes: int = 4_000_000
    cache_dir: str = DEFAULT_CACHE


def _pieces(text: str) -> Iterator[str]:
    buf: list[str] = []
    n = 0
    for line in text.splitlines(keepends=True):
        if n + len(line) > PIECE_BYTES and buf:
            yield "".join(buf)
            buf, n = [], 0
        buf.append(line[: PIECE_BYTES * 2])
        n += len(line)
    if buf:
        yield "".join(buf)


def sample_texts(shares: dict[str, float], sample_bytes: int, options=None, seed: int = 0) -> Iterator[str]:
    """Document pieces from each family's train split, bytes in proportion to shares."""
    from codemix.data import corpora

    for family, share in sorted(shares.items()):
        budget = int(share * sample_bytes)
        if budget <= 0:
            continue
        ds = corpora.text_dataset(family, "train", shuffle_files=False, options=options)
        ds = ds.shuffle(10_000, seed=seed).map(lambda x: x["text"])
        used = 0
        for text in ds.as_numpy_iterator():
            text = text.decode("utf-8")
            for piece in _pieces(text):
                yield piece
                used += len(piece.encode("utf-8"))
                if used >= budget:
                    break
            if used >= budget:
                break
        log.info("vocab sample: %s %d bytes (budget %d)", family, used, budget)


def train(texts: Iterator[str], size: int, output: str) -> dict:
    """Train a SentencePiece BPE model on `texts`; writes `output` (local or gs://)."""
    import sentencepiece as spm

    start = time.time()
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=texts, model_writer=model, vocab_size=size, model_type="bpe",
        byte_fallback=True, split_digits=True, remove_extra_whitespaces=False, add_dummy_prefix=False,
        allow_whitespace_only_pieces=True, normalization_rule_name="identity", user_defined_symbols=["\n", "\t"],
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, max_sentence_length=PIECE_BYTES * 4,
        input_sentence_size=0, num_threads=os.cpu_count() or 1, minloglevel=2,
        character_coverage=0.9995,
    )
    tf.io.gfile.makedirs(os.path.dirname(output) or ".")
    tmp = output + ".tmp"
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(model.getvalue())
    tf.io.gfile.rename(tmp, output, overwrite=True)
    seconds = time.time() - start
    log.info("trained a %d-piece vocabulary in %.1f s -> %s", size, seconds, output)
    return {"path": output, "size": size, "seconds": round(seconds, 2)}


def train_for_mixture(mixture: str, size: int, output: str, sample_bytes: int = 4_000_000,
                      options=None) -> dict:
    """Train on a sample of `mixture` in proportion to its token shares."""
    from codemix.data import mixtures

    shares = mixtures.get_spec(mixture).family_shares()
    start = time.time()
    stats = train(sample_texts(shares, sample_bytes, options), size, output)
    stats.update(mixture=mixture, shares=shares, sample_bytes=sample_bytes,
                 seconds_with_sampling=round(time.time() - start, 2))
    return stats


def resolve_path(options: VocabOptions | None = None) -> str:
    """The model file to use; trains and caches the embedded default if needed."""
    options = options or VocabOptions()
    if options.path:
        if not tf.io.gfile.exists(options.path):
            raise FileNotFoundError(
                f"SentencePiece model {options.path!r} not found; set VocabOptions.path to an existing "
                f".model file (local or gs://) or leave it None for the embedded default."
            )
        return options.path
    from codemix.data import corpus

    corpus_options = corpus.CorpusOptions()
    key = json.dumps({"size": options.size, "mixture": options.mixture, "bytes": options.sample_bytes,
                      "corpus": {f: corpus_options.fingerprint(f) for f in corpus.FAMILIES},
                      "corpus_version": str(corpus.CorpusBuilder.VERSION)}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    path = os.path.join(options.cache_dir, f"{options.mixture}_{options.size}_{digest}.model")
    if not tf.io.gfile.exists(path):
        log.info("training the embedded default vocabulary (%d pieces) -> %s", options.size, path)
        train_for_mixture(options.mixture, options.size, path, options.sample_bytes, corpus_options)
    return path


class CodemixVocabulary(seqio.SentencePieceVocabulary):
    """A SentencePiece vocabulary whose file is resolved (and, for the embedded
    default, trained) only when first used, from the gin-bound VocabOptions."""

    def __init__(self):
        super().__init__(sentencepiece_model_file="")
        self._resolved_for: VocabOptions | None = None

    def _model_context(self):
        options = VocabOptions()
        if self._model is None or self._resolved_for != options:
            self._sentencepiece_model_file = resolve_path(options)
            self._resolved_for = options
            self._model = None
        return super()._model_context()

    @property
    def sentencepiece_model_file(self) -> str:
        self._model_context()
        return self._sentencepiece_model_file

    def __eq__(self, other):
        # Comparing must not train or load the model (seqio compares the
        # features of a mixture's tasks when it is registered).
        return isinstance(other, CodemixVocabulary)

    def __hash__(self):
        return hash(CodemixVocabulary)


VOCABULARY = CodemixVocabulary()
