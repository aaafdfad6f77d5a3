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

Lanes: the global batch is cut into `lanes` (R) lanes of batch_size / R
consecutive rows. Lane l reads the documents of each task whose index in the
task's unshuffled order is l mod R (seqio ShardInfo(l, R); from the cache,
its shards l, l + R, ...: cache.py), packs them into its own per-task
streams and mixes them by its rows of the global choice pattern (row c of
global batch b comes from task pattern[b * batch_size + c], as for one long
stream). A process of Q owns R / Q consecutive lanes, which are exactly its
rows of every global batch, so it reads and tokenizes only its own lanes'
documents, and the global batches depend on R but not on Q: 1, 2 or 4
processes give the same global batches bit for bit (R is fixed for a run;
the process count must divide it).

Each task's packed stream repeats when it runs out (documents are permuted
in windows with a stateless seed of (seed, pass, window), so every pass has
another order); every row carries `epoch`
(0 on the first pass) so repetition is counted and reported by the trainer.

Share schedules: a mixture may change its shares from given optimizer steps
on (gin/mixtures: `schedule`); the choice pattern is then the concatenation
of each phase's pattern, cut at the phase's first row
(step * rows per step), so the switch happens exactly at that step.

Resume with any process count: the data position is global. A checkpoint
holds each lane's tf.data iterator state (`lane_<l>/`, a
`tf.train.Checkpoint`, written by the process that owns the lane) and
`position.json`: the step, the lanes, batch size, sequence length, seed,
schedule, the global rows consumed per source (counted from the pattern) and
each task's corpus size and fingerprint. A run saved by P processes restores
with Q: each process reads the states of the lanes it now owns, after the
position is checked against this run's data (`BatchIterator.check_position`
names what differs). It then yields exactly the global batches the
uninterrupted run would have.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from collections.abc import Sequence

import numpy as np
import seqio
import tensorflow as tf

import gin
from codemix.data.features import ROW_FEATURES, VECTOR_FEATURES  # noqa: F401  (the keys of every batch)


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


def rows_per_source(schedule: list[tuple[int, list[float]]], batch_size: int, pattern_length: int,
                    step: int) -> list[int]:
    """Global rows of each source in the first `step` batches: counted from
    the choice pattern (whole periods times a period's counts plus the rest),
    so any process knows the whole run's counts without seeing its rows."""
    counts = np.zeros(len(schedule[0][1]), dtype=np.int64)
    for i, (start, rates) in enumerate(schedule):
        end = schedule[i + 1][0] if i + 1 < len(schedule) else None
        if step <= start:
            break
        rows = ((min(step, end) if end is not None else step) - start) * batch_size
        pattern = choice_pattern(rates, pattern_length)
        full, rest = divmod(rows, pattern_length)
        counts += full * np.bincount(pattern, minlength=len(counts))[: len(counts)]
        counts += np.bincount(pattern[:rest], minlength=len(counts))[: len(counts)]
    return [int(c) for c in counts]


POSITION_FILE = "position.json"


@dataclasses.dataclass
class BatchIterator:
    """Host-local batches as numpy dicts, with a global, saveable position.

    The global batch is cut into `lanes` lanes of `global_batch_size / lanes`
    consecutive rows; each lane is its own tf.data pipeline over its own
    documents (module doc), and this process owns `lane_datasets`' lanes
    (`own_lanes`), whose rows are its rows of every global batch.
    """

    lane_datasets: list[tf.data.Dataset]
    own_lanes: list[int]
    lanes: int
    source_names: list[str]
    rates: list[float]
    local_batch_size: int
    global_batch_size: int
    sequence_length: int
    vocab_size: int
    seed: int = 0
    pattern_length: int = 100_000
    schedule: list[tuple[int, list[float]]] | None = None  # [(first step, rates)]
    # corpora.provenance of the sources: per family, its corpus fingerprint and declared sources
    corpora: dict | None = None
    # per source: {"documents": count in the split read, "fingerprint": its corpus's} (family tasks only)
    corpus_counts: dict | None = None
    process_index: int = 0
    step: int = 0  # global batches yielded (the same on every process)

    def rates_at(self, step: int) -> list[float]:
        """The requested token shares at optimizer step `step`."""
        current = self.rates
        for start, rates in self.schedule or []:
            if step >= start:
                current = rates
        return current

    def __post_init__(self):
        self._its = [iter(ds) for ds in self.lane_datasets]

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        parts = [next(it) for it in self._its]
        self.step += 1
        if len(parts) == 1:
            return {k: v.numpy() for k, v in parts[0].items()}
        return {k: np.concatenate([p[k].numpy() for p in parts]) for k in parts[0]}

    def position(self) -> dict:
        """The global data position: the same on every process and for any
        process count (what a resume with another process count checks)."""
        schedule = self.schedule or [(0, self.rates)]
        return {
            "step": self.step,
            "lanes": self.lanes,
            "global_batch_size": self.global_batch_size,
            "sequence_length": self.sequence_length,
            "seed": self.seed,
            "sources": list(self.source_names),
            "schedule": [[int(s), [float(r) for r in rates]] for s, rates in schedule],
            "rows_per_source": rows_per_source(schedule, self.global_batch_size, self.pattern_length,
                                               self.step),
            "corpora": self.corpus_counts or {},
        }

    def save(self, directory: str) -> None:
        """Write this process's lanes' tf.data state under `directory`
        (lane_<l>/), and from process 0 the global position (position.json)."""
        from codemix import storage

        for lane, it in zip(self.own_lanes, self._its):
            # A URL is written through TF's ram:// filesystem (codemix/storage.py).
            with storage.tf_writable(f"{directory}/lane_{lane:05d}") as d:
                tf.io.gfile.makedirs(d)
                tf.train.Checkpoint(iterator=it).write(f"{d}/iterator")
        if self.process_index == 0:
            (storage.path(directory) / POSITION_FILE).write_text(json.dumps(self.position(), indent=1))

    def check_position(self, saved: dict, where: str) -> None:
        """DataError naming what differs (and the fix) unless the position
        `saved` (read from `where`) fits this iterator's data."""
        from codemix.data.readers import DataError

        fix = ("resume with the data configuration the run was started with (the same mixture, "
               "batch size, sequence length, seed, make_train_iterator.lanes and corpora), or start "
               "a new run from its weights with train.init_from")
        ours = self.position()
        for name, (theirs, mine) in {
            "number of lanes (make_train_iterator.lanes)": (saved.get("lanes"), ours["lanes"]),
            "global batch size": (saved.get("global_batch_size"), ours["global_batch_size"]),
            "sequence length": (saved.get("sequence_length"), ours["sequence_length"]),
            "data seed": (saved.get("seed"), ours["seed"]),
            "sources": (saved.get("sources"), ours["sources"]),
            "share schedule": (saved.get("schedule"), ours["schedule"]),
        }.items():
            if theirs != mine:
                raise DataError(f"the data position in {where} was taken with {name} {theirs!r}, this "
                                f"run has {mine!r}; {fix}.")
        for task, had in (saved.get("corpora") or {}).items():
            now = ours["corpora"].get(task)
            if now is None:
                continue
            if had["fingerprint"] != now["fingerprint"]:
                raise DataError(f"the data position in {where} was taken on another corpus of task {task!r} "
                                f"(corpus fingerprint {had['fingerprint']}, now {now['fingerprint']}): its "
                                f"rows consumed ({dict(zip(ours['sources'], saved.get('rows_per_source', [])))})"
                                f" count documents of that corpus; {fix}.")
            if now["documents"] < had["documents"]:
                raise DataError(f"the data position in {where} was taken on {had['documents']} documents "
                                f"of task {task!r}, the corpus now has {now['documents']} (fewer than the "
                                f"position counts through); {fix}.")

    def restore(self, directory: str) -> None:
        """Restore this process's lanes from `directory` (written by any
        number of processes) after checking the position against this run."""
        from codemix import storage
        from codemix.data.readers import DataError

        path = storage.path(directory) / POSITION_FILE
        if not path.exists():
            old = (storage.path(directory) / "process_0").exists()
            raise DataError(
                f"no data position ({POSITION_FILE}) in {directory}"
                + ("; it holds per-process iterator states, written before data positions were global"
                   if old else "") + "; start a new run from its weights with train.init_from.")
        saved = json.loads(path.read_text())
        self.check_position(saved, directory)
        for lane, it in zip(self.own_lanes, self._its):
            lane_dir = f"{directory}/lane_{lane:05d}"
            with storage.tf_readable(lane_dir) as d:
                if not tf.io.gfile.exists(f"{d}/iterator.index"):
                    raise DataError(f"{lane_dir}/iterator: lane {lane}'s data state is missing from the "
                                    f"checkpoint (incomplete copy?); restore the file or resume from an older "
                                    f"step.")
                tf.train.Checkpoint(iterator=it).read(f"{d}/iterator").assert_consumed()
        self.step = int(saved["step"])


def _task_documents(task: str, split: str, shard_info, cache_root: str | None = None) -> tf.data.Dataset:
    """{"targets": int32 tokens + EOS} per document, unshuffled, one pass:
    the documents whose index mod `shard_info.num_shards` is its index, in
    order (read from the tokenized cache under `cache_root` when given)."""
    if cache_root is not None:
        from codemix.data import cache

        eos = seqio.get_mixture_or_task(task).output_features["targets"].vocabulary.eos_id
        return cache.cached_documents(cache_root, task, split, shard_info, eos)
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


def _cache_roots(names: Sequence[str], cache_dir: str | None, vocab: seqio.Vocabulary,
                 split: str) -> list[str | None]:
    """Per task: `cache_dir` where it holds the task's finished cache (its
    fingerprint and shard list checked against this run), else None
    (tokenize on the fly)."""
    if not cache_dir:
        return [None] * len(names)
    from codemix.data import cache, corpus

    roots = []
    for name in names:
        if name in cache.TASKS and cache.is_cached(cache_dir, name):
            cache.check_fingerprint(cache_dir, name, vocab.sentencepiece_model_file, corpus.CorpusOptions())
            cache.check_shards(cache_dir, name, split)
            roots.append(cache_dir)
        else:
            logging.getLogger(__name__).info("data: no tokenized cache of %s in %s; tokenizing on the fly",
                                             name, cache_dir)
            roots.append(None)
    return roots


def _corpus_counts(names: Sequence[str], split: str, roots: Sequence[str | None]) -> dict:
    """Per family task: its split's document count (after its source filter)
    and corpus fingerprint. From the cache's shard list where it is cached,
    else the corpus stats, and for a filtered task (text_hq) by counting."""
    from codemix.data import cache, corpora, corpus, tasks

    options = corpus.CorpusOptions()
    out = {}
    for name, root in zip(names, roots):
        if name not in tasks.TASKS:
            continue
        family = tasks.TASKS[name].family
        if root is not None:
            documents = cache.check_shards(root, name, split)["documents"]
        elif tasks.TASKS[name].source_regex:
            documents = tasks.family_texts(name, split).reduce(np.int64(0), lambda n, _: n + 1).numpy()
        else:
            documents = corpora.stats(family, options)["documents"].get(split, 0)
        out[name] = {"documents": int(documents), "fingerprint": options.fingerprint(family)}
    return out


def _check_enough_documents(counts: dict, split: str, lanes: int) -> None:
    """Every lane needs at least one document of each family task (an empty
    lane would make its endless stream wait forever)."""
    for name, c in counts.items():
        if c["documents"] < lanes:
            raise ValueError(
                f"task {name!r} has {c['documents']} {split} documents for {lanes} data lanes; set "
                f"make_train_iterator.lanes to at most {c['documents']} (a divisor of the batch size) "
                f"or use a larger corpus."
            )


def _corpora_provenance(names: Sequence[str]) -> dict:
    from codemix.data import corpora, corpus

    return corpora.provenance(names, corpus.CorpusOptions())


DEFAULT_LANES = 512  # = cache.DEFAULT_SHARDS: 8 readers per host on a 64-host job


def default_lanes(batch_size: int, fewest_documents: int | None = None) -> int:
    """The most lanes a batch of `batch_size` rows and the default cache
    allow, halved while a task has fewer documents than lanes (a local corpus
    may have a handful): a power of two, so it divides the default shards."""
    lanes = math.gcd(int(batch_size), DEFAULT_LANES)
    while fewest_documents is not None and lanes > 1 and lanes > fewest_documents:
        lanes //= 2
    return lanes


def _lane_pattern(schedule, batch_size: int, pattern_length: int, lane: int, rows: int) -> tf.data.Dataset:
    """The sources of lane `lane`'s rows: rows lane*rows .. (lane+1)*rows - 1 of
    every global batch of the global choice pattern."""
    lo = lane * rows
    return (pattern_dataset(schedule, batch_size, pattern_length).batch(batch_size, drop_remainder=True)
            .map(lambda p: p[lo: lo + rows]).unbatch())


@gin.configurable
def make_train_iterator(
    mixture: str = gin.REQUIRED,
    sequence_length: int = 512,
    batch_size: int = 8,
    seed: int = 0,
    split: str = "train",
    lanes: int | None = None,
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
      lanes: data lanes (module doc): the global batches depend on it, the
        process count does not; it must divide batch_size and the cache's
        shard count, and the process count must divide it. None (default):
        gcd(batch_size, 512), e.g. 8 for 8 rows, 512 for 1024 rows.
      pattern_length: rows in one period of the mixing pattern.
      shuffle_buffer: documents held for shuffling per lane and task (part of
        every data checkpoint, so kept moderate).
      process_index, process_count: host identity (default: from jax).
      cache_dir: root of a tokenized cache (`codemix data cache`, local or
        gs://); tasks cached there are read from it (the same batches as
        tokenizing on the fly, refused if made with another vocabulary or
        other corpus options), the others are tokenized. None (default):
        tokenize every task on the fly.
    """
    import jax

    _hide_accelerators_from_tf()
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    names, schedule = resolve_schedule(mixture)
    vocab = _shared_vocabulary(names)
    roots = _cache_roots(names, cache_dir, vocab, split)
    counts = _corpus_counts(names, split, roots)
    if lanes is None:
        lanes = default_lanes(batch_size, min((c["documents"] for c in counts.values()), default=None))
    lanes = int(lanes)
    if lanes <= 0 or batch_size % lanes:
        raise ValueError(f"make_train_iterator.lanes={lanes} does not divide batch_size={batch_size}; use a "
                         f"divisor of the batch size (default: gcd(batch_size, {DEFAULT_LANES})).")
    if lanes % process_count:
        raise ValueError(
            f"{process_count} processes can't share make_train_iterator.lanes={lanes} data lanes evenly; "
            f"run a number of processes that divides {lanes} (the lanes are fixed for the run, the "
            f"process count is not).")
    local = batch_size // process_count
    rows = batch_size // lanes
    per_process = lanes // process_count
    own = list(range(process_index * per_process, (process_index + 1) * per_process))
    rates = schedule[0][1]
    _check_enough_documents(counts, split, lanes)

    def lane_dataset(lane: int) -> tf.data.Dataset:
        streams = [
            packed_stream(_task_documents(t, split, seqio.ShardInfo(index=lane, num_shards=lanes), roots[i]),
                          sequence_length, seed + 7919 * i + 1_000_033 * lane, i, shuffle_buffer)
            for i, t in enumerate(names)
        ]
        if len(streams) == 1:
            ds = streams[0]
        else:
            pattern = _lane_pattern(schedule, batch_size, pattern_length, lane, rows)
            ds = tf.data.Dataset.choose_from_datasets(streams, pattern, stop_on_empty_dataset=False)
        # No tf.data autotuning (nothing here is tuned: no parallel maps, a fixed prefetch): its
        # model thread re-optimises a graph this large (lanes x tasks) for tens of seconds, and
        # an iterator's deletion waits for the round in flight (seen: 40-110 s per run).
        options = tf.data.Options()
        options.autotune.enabled = False
        return ds.batch(rows, drop_remainder=True).prefetch(2).with_options(options)

    logging.getLogger(__name__).info("data: %s -> %s with rates %s; lanes %s of %d", mixture, names,
                                     [round(r, 4) for r in rates], own, lanes)
    return BatchIterator(
        lane_datasets=[lane_dataset(lane) for lane in own],
        own_lanes=own,
        lanes=lanes,
        source_names=names,
        rates=rates,
        local_batch_size=local,
        global_batch_size=batch_size,
        sequence_length=sequence_length,
        vocab_size=vocab.vocab_size,
        seed=seed,
        pattern_length=pattern_length,
        schedule=schedule,
        corpora=_corpora_provenance(names),
        corpus_counts=counts,
        process_index=process_index,
    )
