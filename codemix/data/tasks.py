"""One SeqIO Task per data family, over the prepared TFDS corpora.

Task names are the family names (text, code_web, markup, code_adjacent,
code_synthetic) plus `text_hq`, the high-quality part of text used by the
cooldown mixtures: encyclopedic, book and paper text (the gensim Wikipedia
sample locally; SlimPajama's Wikipedia, Book and ArXiv sets in full runs).

Registering is cheap: a task's corpus is prepared (and the embedded default
vocabulary trained) only when its data or vocabulary is first used. Each
example is `{"targets": tokens + EOS}`; packing and mixing happen in
pipeline.py.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import seqio
import tensorflow as tf

from codemix.data import corpora, corpus
from codemix.data.vocab import VOCABULARY


@dataclasses.dataclass(frozen=True)
class TaskDef:
    family: str
    source_regex: str | None = None  # keep documents whose provenance matches
    description: str = ""


TASKS: dict[str, TaskDef] = {
    "text": TaskDef("text", None, "natural-language text, code removed"),
    "text_hq": TaskDef("text", r"(gensim==.*|slimpajama:RedPajama(Wikipedia|Book|ArXiv))",
                       "encyclopedic, book and paper text"),
    "code_web": TaskDef("code_web", None, "web code, 25 languages"),
    "markup": TaskDef("markup", None, "Markdown, reStructuredText, HTML, CSS"),
    "code_adjacent": TaskDef("code_adjacent", None, "commits, notebooks, Q&A"),
    "code_synthetic": TaskDef("code_synthetic", None, "verified synthetic Python problems"),
}


def _dataset_fn(split: str, shuffle_files: bool, seed: int | None = None, *, name: str) -> tf.data.Dataset:
    spec = TASKS[name]
    ds = corpora.text_dataset(spec.family, split, shuffle_files=shuffle_files, seed=seed,
                             options=corpus.CorpusOptions())
    if spec.source_regex:
        ds = ds.filter(lambda x: tf.strings.regex_full_match(x["source"], spec.source_regex))
    return ds.map(lambda x: {"text": x["text"]})


def family_texts(name: str, split: str) -> tf.data.Dataset:
    """{"text"} documents of family task `name`'s `split`, file order (held-out sets read these)."""
    if name not in TASKS:
        raise corpus.DataError(f"unknown family task {name!r}; tasks are {sorted(TASKS)}.")
    return _dataset_fn(split, False, name=name)


def tokenize_fast(dataset: tf.data.Dataset, output_features) -> tf.data.Dataset:
    """Tokenize "targets" with the SentencePiece C++ library through
    `tf.numpy_function` (declared stateless, so iterator checkpoints still
    work). About twice as fast per core as the TF-op tokenizer that
    seqio.preprocessors.tokenize uses, with identical ids."""
    vocab = output_features["targets"].vocabulary
    processor = vocab.tokenizer  # resolves (and if needed trains) the model now, not at import

    def encode(text: bytes) -> np.ndarray:
        return np.asarray(processor.encode(text.decode("utf-8")), dtype=np.int32)

    def fn(x):
        ids = tf.numpy_function(encode, [x["targets"]], tf.int32, stateful=False)
        return {**x, "targets": tf.ensure_shape(ids, [None])}

    return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def ensure_registered(name: str) -> str:
    """Register task `name` if it is not registered yet."""
    if name in seqio.TaskRegistry.names():
        return name
    if name not in TASKS:
        raise corpus.DataError(f"unknown family task {name!r}; tasks are {sorted(TASKS)}.")
    seqio.TaskRegistry.add(
        name,
        source=seqio.FunctionDataSource(functools.partial(_dataset_fn, name=name), splits=("train", "validation")),
        preprocessors=[
            functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"}),
            tokenize_fast,
            seqio.preprocessors.append_eos_after_trim,
        ],
        output_features={"targets": seqio.Feature(VOCABULARY, add_eos=True)},
        shuffle_buffer_size=1024,
    )
    return name


for _name in TASKS:
    ensure_registered(_name)
