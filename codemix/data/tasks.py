"""One SeqIO Task per family task of codemix/data/task_table.py, over the prepared
TFDS corpora, registered when this module is imported; and the codemix
mixtures as SeqIO Mixtures (`register_mixture`).

Registering is cheap: a task's corpus is prepared (and the embedded default
vocabulary trained) only when its data or vocabulary is first used. Each
example is `{"targets": tokens + EOS}`; packing and mixing happen in
pipeline.py.
"""
from __future__ import annotations

import functools

import numpy as np
import seqio
import tensorflow as tf

from codemix.data import corpora, corpus, mixtures
from codemix.data.readers import DataError
from codemix.data.task_table import TASKS, TaskDef  # noqa: F401  (TaskDef: re-exported for callers)
from codemix.data.vocab import VOCABULARY


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
        raise DataError(f"unknown family task {name!r}; tasks are {sorted(TASKS)}.")
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
        raise DataError(f"unknown family task {name!r}; tasks are {sorted(TASKS)}.")
    seqio.TaskRegistry.add(
        name,
        source=seqio.FunctionDataSource(functools.partial(_dataset_fn, name=name), splits=("train", "validation")),
        preprocessors=[
            functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"}),
            tokenize_fast,
            # Up to here a task's examples can be cached offline (codemix data cache, data/cache.py).
            seqio.CacheDatasetPlaceholder(),
            seqio.preprocessors.append_eos_after_trim,
        ],
        output_features={"targets": seqio.Feature(VOCABULARY, add_eos=True)},
        shuffle_buffer_size=1024,
    )
    return name


class TokenShareMixture(seqio.Mixture):
    """A codemix mixture as registered with SeqIO: its rates are the mixture's
    token shares (`get_rate`), and sampling it through SeqIO is refused.

    SeqIO would mix *documents* by these rates, so its token shares would
    follow document lengths, not the mixture; training mixes packed rows of
    equal length (codemix/data/pipeline.py), which makes row rates token
    rates. `get_dataset` therefore points to the stream training reads.
    """

    def __init__(self, name: str, tasks, *, spec: mixtures.MixtureSpec, **kwargs):
        super().__init__(name, tasks, **kwargs)
        self.spec = spec

    def get_dataset(self, *args, **kwargs):
        schedule = "" if len(self.spec.phases) == 1 else (
            f" (its shares change at steps {[s for s, _ in self.spec.phases[1:]]})")
        raise DataError(
            f"mixture {self.name!r}{schedule} mixes packed rows by token share, which a SeqIO Mixture "
            f"cannot (it samples whole documents); read it with "
            f"codemix.data.pipeline.make_train_iterator(mixture={self.name!r}) or inspect it with "
            f"`codemix data inspect {self.name}`."
        )


def register_mixture(name: str) -> mixtures.MixtureSpec:
    """Register codemix mixture `name` (and its tasks) as a TokenShareMixture
    whose rates are its step-0 token shares; returns its spec."""
    spec = mixtures.get_spec(name)
    for t in spec.tasks:
        ensure_registered(t)
    if name in seqio.MixtureRegistry.names():
        seqio.MixtureRegistry.remove(name)
    seqio.MixtureRegistry.add(name, [(t, spec.shares.get(t, 0.0)) for t in spec.tasks],
                              mixture_cls=TokenShareMixture, spec=spec)
    return spec


for _name in TASKS:
    ensure_registered(_name)
