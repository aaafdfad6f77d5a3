"""SeqIO tasks -> packed per task -> token-exact mixture -> host-local batches.

How packing works: each task's documents (tokens + EOS) are concatenated into
one stream and cut into rows of exactly `sequence_length` tokens, with no
padding (a document that does not fit continues in the next row, positions
restarting at 0 there; `decoder_segment_ids` number the documents within a
row). Every row therefore holds `sequence_length` real tokens whatever its
source, so the share of rows is exactly the share of tokens.

How mixing works (and why it is token-exact): Rows
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

Each task's packed stream repeats when it runs out (documents are permuted
in windows with a stateless seed of (seed, pass, window), so every pass has
another order); every row carries `epoch`
(0 on the first pass) so repetition is counted and reported by the trainer.

Share schedules: a mixture may change its shares from given optimizer steps
on (gin/mixtures: `schedule`); the choice pattern is then the concatenation
of each phase's pattern, cut at the phase's first row
(step * rows per step), so the switch happens exactly at that step.

Resume: `BatchIterator.save(path)` writes the tf.data iterator state (a
`tf.train.Checkpoint`, like T5X), so a restored iterator yields exactly the
batches the uninterrupted one would have.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence

import numpy as np
import seqio
import tensorflow as tf

import gin
from codemix.data.features import ROW_FEATURES, VECTOR_FEATURES  # noqa: F401  (the keys of every batch)

SHARD_MODES = ("files", "rows")


def _hide_accelerators_from_tf():
    # tf.data only feeds host memory; keep TensorFlow off GPUs/TPUs that JAX owns.
    try:
        tf.config.set_visible_devices([], "GPU")
        tf.config.set_visible_devices([], "TPU")
    except (RuntimeError, ValueError):
        pass


def choice_pattern(rates: Sequence[float], length: int) -> np.ndarray:
    """The first `length` entries of the largest-deficit interleaving: row r
    goes to the source whose deficit rate * (r + 1) - rows so far is largest
    (the first such source on a tie). Memoized per (rates, length), so the
    runs of an experiment that share a mixture compute it once."""
    return _choice_pattern(tuple(float(x) for x in rates), int(length)).copy()


@functools.lru_cache(maxsize=32)
def _choice_pattern(rates: tuple[float, ...], length: int) -> np.ndarray:
    # Plain Python floats are IEEE float64, as numpy's were; a scalar loop
    # over a handful of sources is ~20x faster than an argmax call per row.
    total = float(np.sum(np.asarray(rates, dtype=np.float64)))
    shares = [x / total for x in rates]
    counts = [0.0] * len(shares)
    sources = range(len(shares))
    out = np.empty(length, dtype=np.int64)
    for r in range(length):
        n = r + 1
        best, best_deficit = 0, shares[0] * n - counts[0]
        for j in sources:
            d = shares[j] * n - counts[j]
            if d > best_deficit:
                best, best_deficit = j, d
        out[r] = best
        counts[best] += 1.0
    return out


def resolve_sources(name: str) -> tuple[list[str], list[float]]:
    """(task names, normalised rates) for a codemix mixture, SeqIO Task or Mixture name."""
    names, phases = resolve_schedule(name)
    return names, phases[0][1]


def resolve_schedule(name: str) -> tuple[list[str], list[tuple[int, list[float]]]]:
    """(task names, [(first step, normalised rates aligned to names), ...])."""
    from codemix.data import mixtures, tasks  # tasks: registers the family tasks

    if name not in seqio.TaskRegistry.names() and mixtures.is_mixture(name):
        spec = tasks.register_mixture(name)
        names = spec.tasks
        return names, [(step, [shares.get(t, 0.0) for t in names]) for step, shares in spec.phases]
    if name in seqio.MixtureRegistry.names():
        mixture = seqio.get_mixture_or_task(name)
        tasks_ = list(mixture.tasks)
        rates = [float(mixture.get_rate(t)) for t in tasks_]
        names = [t.name for t in tasks_]
    elif name in seqio.TaskRegistry.names():
        names, rates = [name], [1.0]
    else:
        # Only what can be trained on: eval benchmarks are SeqIO tasks too, but
        # they have no "targets" feature.
        trainable = [t for t in seqio.TaskRegistry.names()
                     if "targets" in seqio.TaskRegistry.get(t).output_features]
        known = sorted(set(mixtures.available()) | set(seqio.MixtureRegistry.names()) | set(trainable))
        raise ValueError(
            f"unknown mixture or task {name!r}; known mixtures and training tasks: {known}. "
            f"Add gin/mixtures/{name}.gin or import the module that registers it."
        )
    total = sum(rates)
    if total <= 0:
        raise ValueError(f"mixture {name!r} has non-positive total rate {total}.")
    return names, [(0, [r / total for r in rates])]


def data_vocabulary(name: str) -> seqio.Vocabulary:
    """The vocabulary of a run's data `name` (a codemix mixture, SeqIO Task or
    Mixture): the one all its tasks tokenize with. The one place a run's
    vocabulary is resolved (training, `codemix data`, evaluation and the eval
    hook all call it). The embedded default (`CodemixVocabulary`, which
    follows the gin-bound VocabOptions) is pinned to its model file, so the
    result stays the run's vocabulary after gin is cleared or rebound.
    """
    return _shared_vocabulary(resolve_schedule(name)[0])


def _shared_vocabulary(names: Sequence[str]) -> seqio.Vocabulary:
    from codemix.data.vocab import CodemixVocabulary

    vocabs = {t: seqio.get_mixture_or_task(t).output_features["targets"].vocabulary for t in names}
    sizes = {t: v.vocab_size for t, v in vocabs.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"tasks of one mixture use different vocabularies: {sizes}.")
    vocab = vocabs[names[0]]
    if isinstance(vocab, CodemixVocabulary):
        vocab = seqio.SentencePieceVocabulary(vocab.sentencepiece_model_file)
    return vocab


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
    schedule: list[tuple[int, list[float]]] | None = None  # [(first step, rates)]
    # corpora.provenance of the sources: per family, its corpus fingerprint and declared sources
    corpora: dict | None = None

    def rates_at(self, step: int) -> list[float]:
        """The requested token shares at optimizer step `step`."""
        current = self.rates
        for start, rates in self.schedule or []:
            if step >= start:
                current = rates
        return current

    def __post_init__(self):
        self._it = iter(self.dataset)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in next(self._it).items()}

    def save(self, directory: str) -> None:
        """Write the iterator state under `directory` (created if needed; a URL is
        written through TF's ram:// filesystem, codemix/storage.py)."""
        from codemix import storage

        with storage.tf_writable(directory) as d:
            tf.io.gfile.makedirs(d)
            tf.train.Checkpoint(iterator=self._it).write(f"{d}/iterator")

    def restore(self, directory: str) -> None:
        from codemix import storage

        with storage.tf_readable(directory) as d:
            if not tf.io.gfile.exists(f"{d}/iterator.index"):
                raise FileNotFoundError(
                    f"no data iterator state at {directory}/iterator; the checkpoint was written without one "
                    f"(or by a different number of processes)."
                )
            tf.train.Checkpoint(iterator=self._it).read(f"{d}/iterator").assert_consumed()


def _task_documents(task: str, split: str, shard_info, cache_root: str | None = None) -> tf.data.Dataset:
    """{"targets": int32 tokens + EOS} per document, unshuffled, one pass
    (read from the tokenized cache under `cache_root` when given)."""
    if cache_root is not None:
        from codemix.data import cache

        return cache.cached_documents(cache_root, task, split, shard_info)
    return seqio.get_mixture_or_task(task).get_dataset(
        sequence_length=None,
        split=split,
        shuffle=False,
        shard_info=shard_info,
        num_epochs=1,
        trim_output_features=False,
        try_in_mem_cache=False,
    )


def _pack_row(row: dict, sequence_length: int) -> dict:
    """Decoder features of one row of `sequence_length` concatenated tokens."""
    tokens = tf.cast(row["tokens"], tf.int32)
    seg = tf.cast(row["doc"] - row["doc"][0], tf.int32)
    index = tf.range(sequence_length, dtype=tf.int32)
    starts = tf.math.unsorted_segment_min(index, seg, num_segments=seg[-1] + 1)
    positions = index - tf.gather(starts, seg)
    inputs = tf.concat([tf.zeros([1], tf.int32), tokens[:-1]], axis=0)
    inputs = tf.where(positions == 0, tf.zeros_like(inputs), inputs)
    return {
        "decoder_input_tokens": inputs,
        "decoder_target_tokens": tokens,
        "decoder_segment_ids": seg + 1,
        "decoder_positions": positions,
        "decoder_loss_weights": tf.ones([sequence_length], tf.float32),
        "epoch": tf.cast(row["epoch"][0], tf.int32),
    }


def packed_stream(
    docs: tf.data.Dataset, sequence_length: int, seed: int, source_id: int, shuffle_buffer: int = 1024
) -> tf.data.Dataset:
    """Endless rows of exactly `sequence_length` tokens from one task's documents.

    Shuffling is stateless so the whole pipeline stays serialisable for
    resume: each pass over `docs` is cut into windows of `shuffle_buffer`
    documents and each window is permuted with the seed (seed, pass, window),
    so every pass has another order (a corpus smaller than one window is fully
    permuted each pass). Documents are concatenated across passes, so no token
    is dropped or padded.
    """
    seed = int(seed)

    def one_pass(epoch):
        windows = docs.map(lambda x: tf.cast(x["targets"], tf.int32)).ragged_batch(shuffle_buffer).enumerate()

        def permute(w, batch):
            key = tf.stack([tf.cast(seed, tf.int64), epoch * 1_000_003 + w])
            order = tf.random.experimental.stateless_shuffle(tf.range(batch.nrows()), seed=key)
            return tf.gather(batch, order)

        return windows.map(permute).unbatch().map(lambda t: (t, epoch))

    def annotate(i, item):
        tokens, epoch = item
        n = tf.shape(tokens)[0]
        return {"tokens": tf.cast(tokens, tf.int32), "doc": tf.fill([n], i),
                "pos": tf.range(n), "epoch": tf.fill([n], tf.cast(epoch, tf.int32))}

    stream = tf.data.Dataset.range(2**62).flat_map(one_pass)
    stream = stream.enumerate().map(annotate).rebatch(sequence_length, drop_remainder=True)
    stream = stream.map(lambda r: _pack_row(r, sequence_length))
    return stream.map(lambda x: {**x, "source_id": tf.constant(source_id, tf.int32)})


def pattern_dataset(schedule: list[tuple[int, list[float]]], rows_per_step: int, pattern_length: int):
    """Task index per row: each phase's largest-deficit pattern, switched at its first step."""
    parts = []
    for i, (start, rates) in enumerate(schedule):
        ds = tf.data.Dataset.from_tensor_slices(choice_pattern(rates, pattern_length)).repeat()
        if i + 1 < len(schedule):
            ds = ds.take((schedule[i + 1][0] - start) * rows_per_step)
        parts.append(ds)
    out = parts[0]
    for p in parts[1:]:
        out = out.concatenate(p)
    return out


def _cache_roots(names: Sequence[str], cache_dir: str | None, vocab: seqio.Vocabulary) -> list[str | None]:
    """Per task: `cache_dir` where it holds the task's finished cache (its
    fingerprint checked against this run), else None (tokenize on the fly)."""
    if not cache_dir:
        return [None] * len(names)
    from codemix.data import cache, corpus

    roots = []
    for name in names:
        if name in cache.TASKS and cache.is_cached(cache_dir, name):
            cache.check_fingerprint(cache_dir, name, vocab.sentencepiece_model_file, corpus.CorpusOptions())
            roots.append(cache_dir)
        else:
            logging.getLogger(__name__).info("data: no tokenized cache of %s in %s; tokenizing on the fly",
                                             name, cache_dir)
            roots.append(None)
    return roots


def _check_enough_documents(names: Sequence[str], split: str, process_count: int) -> None:
    """Every host needs at least one document of each family task (an empty
    shard would make its endless stream wait forever)."""
    from codemix.data import corpora, corpus, tasks

    for name in names:
        if name in tasks.TASKS:
            family = tasks.TASKS[name].family
            n = corpora.stats(family, corpus.CorpusOptions())["documents"].get(split, 0)
            if n < process_count:
                raise ValueError(
                    f"task {name!r} has {n} {split} documents for {process_count} processes; use "
                    f"make_train_iterator.shard_mode='rows' or a larger corpus."
                )


def _corpora_provenance(names: Sequence[str]) -> dict:
    from codemix.data import corpora, corpus

    return corpora.provenance(names, corpus.CorpusOptions())


@gin.configurable
def make_train_iterator(
    mixture: str = gin.REQUIRED,
    sequence_length: int = 512,
    batch_size: int = 8,
    seed: int = 0,
    split: str = "train",
    shard_mode: str = "files",
    pattern_length: int = 100_000,
    shuffle_buffer: int = 1024,
    process_index: int | None = None,
    process_count: int | None = None,
    cache_dir: str | None = None,
) -> BatchIterator:
    """Batches for training from a SeqIO Task or Mixture.

    Args:
      mixture: a codemix mixture (gin/mixtures/<name>.gin, token shares and an
        optional share schedule), or a registered SeqIO Mixture or Task name.
      sequence_length: tokens per row (packed).
      batch_size: global rows per step (all hosts together).
      seed: shuffling seed; the same seed gives the same batches.
      split: dataset split to read.
      shard_mode: "files" (disjoint per-host reads) or "rows" (every host builds
        the global stream; exact N-host == 1-host equivalence). See module doc.
      pattern_length: rows in one period of the mixing pattern.
      shuffle_buffer: documents held for shuffling per task (part of every
        data-iterator checkpoint, so kept moderate).
      process_index, process_count: host identity (default: from jax).
      cache_dir: root of a tokenized cache (`codemix data cache`, local or
        gs://); tasks cached there are read from it (the same batches as
        tokenizing on the fly, refused if made with another vocabulary or
        other corpus options), the others are tokenized. None (default):
        tokenize every task on the fly.
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
    names, schedule = resolve_schedule(mixture)
    rates = schedule[0][1]
    vocab = _shared_vocabulary(names)
    vocab_size = vocab.vocab_size
    roots = _cache_roots(names, cache_dir, vocab)
    shard = None
    if shard_mode == "files" and process_count > 1:
        shard = seqio.ShardInfo(index=process_index, num_shards=process_count)
    if shard is not None:
        _check_enough_documents(names, split, process_count)
    streams = [
        packed_stream(_task_documents(t, split, shard, roots[i]), sequence_length, seed + 7919 * i, i,
                      shuffle_buffer)
        for i, t in enumerate(names)
    ]
    rows_per_step = batch_size if shard_mode == "rows" else local
    if len(streams) == 1:
        ds = streams[0]
    else:
        pattern = pattern_dataset(schedule, rows_per_step, pattern_length)
        ds = tf.data.Dataset.choose_from_datasets(streams, pattern, stop_on_empty_dataset=False)
    if shard_mode == "rows":
        ds = ds.batch(batch_size, drop_remainder=True)
        lo = process_index * local
        ds = ds.map(lambda b: {k: v[lo : lo + local] for k, v in b.items()})
    else:
        ds = ds.batch(local, drop_remainder=True)
    ds = ds.prefetch(2)
    logging.getLogger(__name__).info("data: %s -> %s with rates %s", mixture, names, [round(r, 4) for r in rates])
    return BatchIterator(
        dataset=ds,
        source_names=names,
        rates=rates,
        local_batch_size=local,
        global_batch_size=batch_size,
        sequence_length=sequence_length,
        vocab_size=vocab_size,
        schedule=schedule,
        corpora=_corpora_provenance(names),
    )
