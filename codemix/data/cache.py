"""The tokenized cache of the family tasks: written by a Beam job, read by training.

  codemix data cache --mixture balanced --output gs://bucket/codemix-cache --beam_runner DataflowRunner ...

Each family task (data/tasks.py) has a `seqio.CacheDatasetPlaceholder` after
tokenization, so its cached examples are `{"targets": token ids}` (no EOS; the
post-cache `append_eos_after_trim` adds it when read). The cache has SeqIO's
layout, so SeqIO reads it (`Task.get_dataset(use_cached=True)`):

  ROOT/<task>/{split}.tfrecord-00000-of-00001   tf.Examples, in corpus file order
  ROOT/<task>/info.{split}.json, stats.{split}.json   (seqio.beam_utils GetInfo / GetStats)
  ROOT/<task>/codemix_fingerprint.json          what the cache was made from
  ROOT/<task>/COMPLETED                         written last, after the Beam job succeeded

Why not `seqio_cache_tasks` itself: it reshuffles the examples globally
(`beam.Reshuffle`) before writing, so the cached order is another one on every
run. Training shuffles statelessly itself (pipeline.packed_stream), and the
cached stream must give exactly the on-the-fly batches, so each task split is
written by one Beam worker in the order its documents are read. Tasks and
splits run in parallel; one split is not split further (the family task's
source is one SeqIO shard).

The fingerprint (vocabulary file SHA-256, the corpus options' fingerprint of
the family, the task's definition and this module's CACHE_VERSION) is compared
when training opens the cache: a cache made with another vocabulary or other
corpus options is refused with the fix named, never read.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence

import seqio
import tensorflow as tf

from codemix.data.corpus import CorpusOptions
from codemix.data.readers import DataError
from codemix.data.task_table import TASKS

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when what a cached example holds changes
FINGERPRINT_FILE = "codemix_fingerprint.json"
SPLITS = ("train", "validation")


def task_cache_dir(root: str, name: str) -> str:
    return os.path.join(root, seqio.get_task_dir_from_name(name))


def is_cached(root: str, name: str) -> bool:
    """Whether a finished cache of family task `name` is under `root`."""
    return tf.io.gfile.exists(os.path.join(task_cache_dir(root, name), "COMPLETED"))


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(name: str, vocab_file: str, options: CorpusOptions) -> dict:
    """What a cache of family task `name` depends on."""
    if name not in TASKS:
        raise DataError(f"only family tasks are cached; {name!r} is not one of {sorted(TASKS)}.")
    spec = TASKS[name]
    return {
        "cache_version": CACHE_VERSION,
        "task": name,
        "task_def": {"family": spec.family, "source_regex": spec.source_regex},
        "corpus_options": options.fingerprint(spec.family),
        "vocabulary_sha256": file_sha256(vocab_file),
    }


def check_fingerprint(root: str, name: str, vocab_file: str, options: CorpusOptions) -> None:
    """DataError naming what differs (and the fix) unless the cache under
    `root` was made from this vocabulary, these corpus options and this task."""
    path = os.path.join(task_cache_dir(root, name), FINGERPRINT_FILE)
    fix = (f"rebuild it with this run's gin: `codemix data cache --mixture <mixture> --output {root} "
           f"--overwrite`, or point make_train_iterator.cache_dir elsewhere (None tokenizes on the fly)")
    if not tf.io.gfile.exists(path):
        raise DataError(f"the tokenized cache of task {name!r} in {root} has no {FINGERPRINT_FILE}, so "
                        f"nothing says which vocabulary made it; {fix}.")
    with tf.io.gfile.GFile(path) as f:
        found = json.load(f)
    expected = fingerprint(name, vocab_file, options)
    differ = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
    if differ:
        details = "; ".join(f"{k}: cache {found.get(k)!r}, run {expected.get(k)!r}" for k in differ)
        what = {"vocabulary_sha256": "another vocabulary", "corpus_options": "other corpus options",
                "task_def": "another task definition", "cache_version": "another cache version"}
        made = ", ".join(what.get(k, k) for k in differ)
        raise DataError(f"the tokenized cache of task {name!r} in {root} was made with {made} than this "
                        f"run ({details}); {fix}.")


class _PinnedCacheTask(seqio.Task):
    """A family task whose cache is one given directory (not SeqIO's global
    search, which remembers the first directory it found per task)."""

    def __init__(self, task: seqio.Task, cache_dir: str):
        super().__init__(task.name, source=task.source, output_features=task.output_features,
                         preprocessors=task.preprocessors, shuffle_buffer_size=task.shuffle_buffer_size)
        self._pinned_cache_dir = cache_dir

    @property
    def cache_dir(self) -> str:
        return self._pinned_cache_dir


def cached_documents(root: str, name: str, split: str, shard_info) -> tf.data.Dataset:
    """{"targets": tokens + EOS} of family task `name` read from the cache
    under `root`, in cached (corpus) order, one pass."""
    task = _PinnedCacheTask(seqio.TaskRegistry.get(name), task_cache_dir(root, name))
    return task.get_dataset(sequence_length=None, split=split, shuffle=False, shard_info=shard_info,
                            num_epochs=1, trim_output_features=False, try_in_mem_cache=False, use_cached=True)


def precache_examples(name: str, split: str, options: CorpusOptions, vocab_file: str) -> Iterator[dict]:
    """The examples of family task `name` as the cache holds them: its
    registered preprocessors up to the CacheDatasetPlaceholder, with the
    corpus options and vocabulary passed in (a Beam worker has no gin)."""
    from codemix.data import corpora, tasks

    registered = seqio.TaskRegistry.get(tasks.ensure_registered(name))
    spec = TASKS[name]

    def source_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
        ds = corpora.text_dataset(spec.family, split, shuffle_files=shuffle_files, seed=seed, options=options)
        if spec.source_regex:
            ds = ds.filter(lambda x: tf.strings.regex_full_match(x["source"], spec.source_regex))
        return ds.map(lambda x: {"text": x["text"]})

    vocab = seqio.SentencePieceVocabulary(vocab_file)
    task = seqio.Task(name, source=seqio.FunctionDataSource(source_fn, splits=SPLITS),
                      output_features={"targets": seqio.Feature(vocab, add_eos=True)},
                      preprocessors=registered.preprocessors)
    ds = task.preprocess_precache(task.source.get_dataset(split=split, shuffle=False))
    yield from ds.as_numpy_iterator()


def write_split(root: str, name: str, split: str, options: CorpusOptions, vocab_file: str) -> Iterator[dict]:
    """Write one task split's TFRecord in order (renamed into place when
    complete); yields each example for the info and stats transforms."""
    out = task_cache_dir(root, name)
    tf.io.gfile.makedirs(out)
    path = seqio.get_cached_tfrecord_prefix(out, split) + "-00000-of-00001"
    tmp = path + ".incomplete"
    with tf.io.TFRecordWriter(tmp) as writer:
        for ex in precache_examples(name, split, options, vocab_file):
            writer.write(seqio.dict_to_tfexample(ex).SerializeToString())
            yield ex
    tf.io.gfile.rename(tmp, path, overwrite=True)


def build(names: Sequence[str], root: str, vocab_file: str, options: CorpusOptions, settings,
          overwrite: bool = False) -> dict[str, str]:
    """Cache family tasks `names` under `root` with one Beam pipeline
    (beam_prepare.BeamSettings `settings`); {task: "cached" | "up to date"}."""
    import apache_beam as beam
    from seqio import beam_utils

    from codemix.data import corpora

    status, todo = {}, []
    for name in names:
        expected = fingerprint(name, vocab_file, options)
        if is_cached(root, name) and not overwrite:
            check_fingerprint(root, name, vocab_file, options)
            status[name] = "up to date"
            continue
        if tf.io.gfile.exists(task_cache_dir(root, name)):
            tf.io.gfile.rmtree(task_cache_dir(root, name))
        corpora.prepare(TASKS[name].family, options)  # once, here, not raced by the workers
        todo.append((name, expected))
    if not todo:
        return status
    features = {"targets": seqio.Feature(seqio.SentencePieceVocabulary(vocab_file), add_eos=True)}
    with beam.Pipeline(options=settings.pipeline_options()) as p:
        for name, _ in todo:
            out = task_cache_dir(root, name)
            for split in SPLITS:
                label = f"{name}_{split}"
                examples = (p | f"{label}_create" >> beam.Create([split])
                            | f"{label}_write" >> beam.FlatMap(
                                lambda s, n=name: write_split(root, n, s, options, vocab_file)))
                _ = (examples | f"{label}_info" >> beam_utils.GetInfo(1)
                     | f"{label}_write_info" >> beam_utils.WriteJson(seqio.get_cached_info_path(out, split)))
                _ = (examples | f"{label}_stats" >> beam_utils.GetStats(features)
                     | f"{label}_write_stats" >> beam_utils.WriteJson(seqio.get_cached_stats_path(out, split)))
    for name, expected in todo:
        out = task_cache_dir(root, name)
        with tf.io.gfile.GFile(os.path.join(out, FINGERPRINT_FILE), "w") as f:
            json.dump(expected, f, indent=2, sort_keys=True)
        with tf.io.gfile.GFile(os.path.join(out, "COMPLETED"), "w") as f:
            f.write("")
        status[name] = "cached"
        log.info("cached %s in %s", name, out)
    return status

