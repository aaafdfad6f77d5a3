"""SeqIO tasks -> packed per task -> token-exact mixture -> host-local batches.

How mixing works (and why it is token-exact): every task is packed to the
sequence length on its own, so every row holds `sequence_length` token slots
whatever its source; the share of rows is therefore the share of tokens. Rows
are interleaved by a fixed *choice pattern* instead of random sampling: row r
of the stream comes from the task whose realised count lags its target
`rate * (r + 1)` the most (largest deficit first, ties to the lower task
index). Over any prefix of n rows each task's count is within one row of
`rate * n`, so realised shares converge as 1/n instead of 1/sqrt(n), and the
pattern is identical on every host and every restart.

Host sharding (`shard_mode`):
  "files": each host reads a disjoint shard of every task (seqio ShardInfo =
           process index / count) and yields its batch_size / process_count
           rows. Cheap; the union over hosts is the data, in another order than
           one host would produce.
  "rows":  every host builds the whole global stream and keeps its own slice of
           rows of each global batch. N hosts then train on exactly the batches
           one host would (used to prove multi-host equivalence), at the cost of
           N-fold preprocessing.

Each task's packed stream repeats when it runs out; every row carries `epoch`
(0 on the first pass) so repetition is counted and reported by the trainer.

Resume: `BatchIterator.save(path)` writes the tf.data iterator state (a
`tf.train.Checkpoint`, like T5X), so a restored iterator yields exactly the
batches the uninterrupted one would have.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Sequence

import gin
import numpy as np
import seqio
import tensorflow as tf

FEATURES = (
    "decoder_input_tokens",
    "decoder_target_tokens",
    "decoder_segment_ids",
    "decoder_positions",
    "decoder_loss_weights",
)
SHARD_MODES = ("files", "rows")


def _hide_accelerators_from_tf():
    # tf.data only feeds host memory; keep TensorFlow off GPUs/TPUs that JAX owns.
    try:
        tf.config.set_visible_devices([], "GPU")
        tf.config.set_visible_devices([], "TPU")
    except (RuntimeError, ValueError):
        pass


def choice_pattern(rates: Sequence[float], length: int) -> np.ndarray:
    """The first `length` entries of the largest-deficit interleaving."""
    rates = np.asarray(rates, dtype=np.float64)
    rates = rates / rates.sum()
    counts = np.zeros(len(rates))
    out = np.empty(length, dtype=np.int64)
    for r in range(length):
        deficit = rates * (r + 1) - counts
        k = int(np.argmax(deficit))
        out[r] = k
        counts[k] += 1
    return out


def resolve_sources(name: str) -> tuple[list[str], list[float]]:
    """(task names, normalised rates) for a SeqIO Task or Mixture name."""
    if name in seqio.MixtureRegistry.names():
        mixture = seqio.get_mixture_or_task(name)
        tasks = list(mixture.tasks)
        rates = [float(mixture.get_rate(t)) for t in tasks]
        names = [t.name for t in tasks]
    elif name in seqio.TaskRegistry.names():
        names, rates = [name], [1.0]
    else:
        known = sorted(set(seqio.MixtureRegistry.names()) | set(seqio.TaskRegistry.names()))
        raise ValueError(
            f"unknown mixture or task {name!r}; registered names: {known}. "
            f"Import the module that registers it (gin: import codemix.data.<module>)."
        )
    total = sum(rates)
    if total <= 0:
        raise ValueError(f"mixture {name!r} has non-positive total rate {total}.")
    return names, [r / total for r in rates]


def shared_vocab_size(task_names: Sequence[str]) -> int:
    """The vocabulary size all tasks share (a mixture can't mix vocabularies)."""
    sizes = {}
    for t in task_names:
        vocab = seqio.get_mixture_or_task(t).output_features["targets"].vocabulary
        sizes[t] = vocab.vocab_size
    if len(set(sizes.values())) > 1:
        raise ValueError(f"tasks of one mixture use different vocabularies: {sizes}.")
    return next(iter(sizes.values()))


@dataclasses.dataclass
class BatchIterator:
    """Host-local batches as numpy dicts, with saveable position."""

    dataset: tf.data.Dataset
    source_names: list[str]
    rates: list[float]
    local_batch_size: int
    global_batch_size: int
    sequence_length: int
    vocab_size: int

    def __post_init__(self):
        self._it = iter(self.dataset)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in next(self._it).items()}

    def save(self, directory: str) -> None:
        """Write the iterator state under `directory` (created if needed)."""
        tf.io.gfile.makedirs(directory)
        tf.train.Checkpoint(iterator=self._it).write(os.path.join(directory, "iterator"))

    def restore(self, directory: str) -> None:
        prefix = os.path.join(directory, "iterator")
        if not tf.io.gfile.exists(prefix + ".index"):
            raise FileNotFoundError(
                f"no data iterator state at {prefix}; the checkpoint was written without one "
                f"(or by a different number of processes)."
            )
        tf.train.Checkpoint(iterator=self._it).read(prefix).assert_consumed()


def _packed_task(task: str, sequence_length: int, split: str, seed: int, shard_info):
    ds = seqio.get_dataset(
        task,
        task_feature_lengths={"targets": sequence_length},
        feature_converter=seqio.DecoderFeatureConverter(pack=True),
        dataset_split=split,
        shuffle=True,
        num_epochs=1,
        shard_info=shard_info,
        seed=seed,
        verbose=False,
    )
    return ds


def _with_epochs(ds: tf.data.Dataset, source_id: int) -> tf.data.Dataset:
    """Repeat forever, tagging each row with its source and pass number."""

    def one_pass(epoch):
        return ds.map(
            lambda x: {
                **{k: tf.cast(x[k], tf.int32) for k in FEATURES if k != "decoder_loss_weights"},
                "decoder_loss_weights": tf.cast(x["decoder_loss_weights"], tf.float32),
                "source_id": tf.constant(source_id, tf.int32),
                "epoch": tf.cast(epoch, tf.int32),
            }
        )

    return tf.data.Dataset.range(2**62).flat_map(one_pass)


@gin.configurable
def make_train_iterator(
    mixture: str = gin.REQUIRED,
    sequence_length: int = 512,
    batch_size: int = 8,
    seed: int = 0,
    split: str = "train",
    shard_mode: str = "files",
    pattern_length: int = 100_000,
    process_index: int | None = None,
    process_count: int | None = None,
) -> BatchIterator:
    """Batches for training from a SeqIO Task or Mixture.

    Args:
      mixture: registered SeqIO Mixture or Task name.
      sequence_length: tokens per row (packed).
      batch_size: global rows per step (all hosts together).
      seed: shuffling seed; the same seed gives the same batches.
      split: dataset split to read.
      shard_mode: "files" (disjoint per-host reads) or "rows" (every host builds
        the global stream; exact N-host == 1-host equivalence). See module doc.
      pattern_length: rows in one period of the mixing pattern.
      process_index, process_count: host identity (default: from jax).
    """
    import jax

    _hide_accelerators_from_tf()
    if shard_mode not in SHARD_MODES:
        raise ValueError(f"make_train_iterator.shard_mode={shard_mode!r}; use one of {SHARD_MODES}.")
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if batch_size % process_count:
        raise ValueError(
            f"batch_size={batch_size} is not divisible by the {process_count} processes; "
            f"set make_train_iterator.batch_size to a multiple of {process_count}."
        )
    local = batch_size // process_count
    names, rates = resolve_sources(mixture)
    vocab_size = shared_vocab_size(names)
    shard = None
    if shard_mode == "files" and process_count > 1:
        shard = seqio.ShardInfo(index=process_index, num_shards=process_count)
    streams = [
        _with_epochs(_packed_task(t, sequence_length, split, seed + 7919 * i, shard), i)
        for i, t in enumerate(names)
    ]
    if len(streams) == 1:
        ds = streams[0]
    else:
        pattern = tf.data.Dataset.from_tensor_slices(choice_pattern(rates, pattern_length)).repeat()
        ds = tf.data.Dataset.choose_from_datasets(streams, pattern, stop_on_empty_dataset=False)
    if shard_mode == "rows":
        ds = ds.batch(batch_size, drop_remainder=True)
        lo = process_index * local
        ds = ds.map(lambda b: {k: v[lo : lo + local] for k, v in b.items()})
    else:
        ds = ds.batch(local, drop_remainder=True)
    ds = ds.prefetch(2)
    logging.info("data: %s -> %s with rates %s", mixture, names, [round(r, 4) for r in rates])
    return BatchIterator(
        dataset=ds,
        source_names=names,
        rates=rates,
        local_batch_size=local,
        global_batch_size=batch_size,
        sequence_length=sequence_length,
        vocab_size=vocab_size,
    )
