"""The tokenized cache of the family tasks: written by a Beam job, read by training.

  codemix data cache --mixture balanced --output gs://bucket/codemix-cache --beam_runner DataflowRunner ...

Each family task (data/tasks.py) has a `seqio.CacheDatasetPlaceholder` after
tokenization, so its cached examples are `{"targets": token ids}` (no EOS;
reading appends it, as the post-cache `append_eos_after_trim` does):

  ROOT/<task>/{split}.tfrecord-<write>-<s>-of-<S>   tf.Examples: shard s of S
  ROOT/<task>/shards.{split}.json               the write's id, each shard's file, documents and bytes
  ROOT/<task>/info.{split}.json, stats.{split}.json   (seqio.beam_utils GetInfo / GetStats)
  ROOT/<task>/codemix_fingerprint.json          what the cache was made from
  ROOT/<task>/COMPLETED                         written last, after the Beam job succeeded

The order is a function of the corpus alone. Document d of a task split (its
index in the unshuffled corpus order, after the task's source filter) goes
to shard d mod S, and each shard holds its documents in increasing d. The
Beam job gets there with any number of workers: the split is cut into
ranges of raw documents, read and tokenized in parallel; a count per range
gives each kept document its index d; a GroupByKey on d mod S brings a
shard's documents to one worker, which sorts them by d and writes the shard.
A cache written by 1 worker is therefore the same bytes, shard by shard, as
one written by 4 (tests/data/test_cache.py).

Training reads in lanes (pipeline.py): lane l of R reads the documents with
d mod R = l in increasing d. With R dividing S, those are exactly shards l,
l + R, l + 2R, ... read round-robin one document at a time (shard l + kR
holds d = l + kR, l + kR + S, ...), so a host reads only its lanes' shards and
cached batches equal on-the-fly batches (which shard the documents the same
way, by index mod R) bit for bit. Why not `seqio_cache_tasks`: it reshuffles
the examples globally (`beam.Reshuffle`) before writing, so the cached order
is another one on every run.

The fingerprint (vocabulary file SHA-256, the corpus options' fingerprint of
the family, the task's definition and this module's CACHE_VERSION) is compared
when training opens the cache: a cache made with another vocabulary or other
corpus options is refused with the fix named, never read. The shard list is
checked against `shards.<split>.json`: a missing or extra shard, a shard of
another write (its write id differs) or of another size is refused by name.
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

CACHE_VERSION = 2  # bump when what a cached example holds or the shard layout changes
DEFAULT_SHARDS = 512  # 8 readers per host on a 64-host job
UNIT_DOCUMENTS = 10_000  # raw documents one Beam work item reads and tokenizes
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


def shard_name(split: str, write_id: str, shard: int, num_shards: int) -> str:
    return f"{split}.tfrecord-{write_id}-{shard:05d}-of-{num_shards:05d}"


def manifest_path(root: str, name: str, split: str) -> str:
    return os.path.join(task_cache_dir(root, name), f"shards.{split}.json")


def check_shards(root: str, name: str, split: str) -> dict:
    """The shard manifest of task `name`'s `split`, after checking that the
    shard files are exactly its shards, of its write and sizes; DataError
    naming the first shard that is missing, extra or of another write."""
    out = task_cache_dir(root, name)
    path = manifest_path(root, name, split)
    fix = (f"rebuild the cache: `codemix data cache --mixture <mixture> --output {root} --overwrite`")
    if not tf.io.gfile.exists(path):
        raise DataError(f"the tokenized cache of task {name!r} in {root} has no shards.{split}.json (written "
                        f"by another codemix version, or not finished); {fix}.")
    with tf.io.gfile.GFile(path) as f:
        manifest = json.load(f)
    expected = {s["file"]: s for s in manifest["shards"]}
    found = {os.path.basename(p) for p in tf.io.gfile.glob(os.path.join(out, f"{split}.tfrecord-*"))}
    for file in sorted(found - set(expected)):
        other = not file.startswith(f"{split}.tfrecord-{manifest['write_id']}-")
        raise DataError(
            f"{os.path.join(out, file)}: " + (
                f"a shard of another write of the cache (this cache is write {manifest['write_id']})"
                if other else f"an extra shard: shards.{split}.json lists {manifest['num_shards']}")
            + f"; shards of two writes can't be mixed: {fix}.")
    for file in sorted(expected):
        full = os.path.join(out, file)
        if file not in found:
            raise DataError(f"{full}: shard {expected[file]['shard']} of {manifest['num_shards']} of task {name!r} "
                            f"is missing; copy it back or {fix}.")
        size = tf.io.gfile.stat(full).length
        if size != expected[file]["bytes"]:
            raise DataError(f"{full}: {size} bytes where shards.{split}.json records {expected[file]['bytes']} "
                            f"(another write of this shard, or a damaged copy); {fix}.")
    return manifest


def lane_files(root: str, name: str, split: str, lane: int, lanes: int) -> list[str]:
    """The shard files lane `lane` of `lanes` reads (shards lane, lane + lanes, ...),
    after checking the shard list; DataError unless `lanes` divides the shard count."""
    manifest = check_shards(root, name, split)
    total = manifest["num_shards"]
    if total % lanes:
        raise DataError(f"the tokenized cache of task {name!r} in {root} has {total} shards, which "
                        f"{lanes} data lanes can't split evenly; set make_train_iterator.lanes to a divisor of "
                        f"{total}, or rebuild the cache with a multiple of {lanes} shards (--num_shards).")
    out = task_cache_dir(root, name)
    files = [os.path.join(out, s["file"]) for s in sorted(manifest["shards"], key=lambda s: s["shard"])]
    return files[lane::lanes]


def cached_documents(root: str, name: str, split: str, shard_info, eos_id: int) -> tf.data.Dataset:
    """{"targets": tokens + EOS} of family task `name`'s documents d with
    d mod num_shards = index (`shard_info`; all when None), in increasing d,
    read from the cache under `root`: shards index, index + num_shards, ...
    round-robin, one document each."""
    index, lanes = (shard_info.index, shard_info.num_shards) if shard_info else (0, 1)
    files = lane_files(root, name, split, index, lanes)
    spec = {"targets": tf.io.VarLenFeature(tf.int64)}

    def parse(record):
        ids = tf.sparse.to_dense(tf.io.parse_single_example(record, spec)["targets"])
        return {"targets": tf.concat([tf.cast(ids, tf.int32), tf.constant([eos_id], tf.int32)], axis=0)}

    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=len(files), block_length=1)  # sequential: round-robin
    return ds.map(parse)


def _range_dataset(family: str, split: str, start: int, stop: int, options: CorpusOptions) -> tf.data.Dataset:
    """Raw documents start .. stop - 1 of a prepared family split, in corpus order."""
    import tensorflow_datasets as tfds

    from codemix.data import corpora

    builder = corpora.prepare(family, options)
    return builder.as_dataset(split=f"{split}[{start}:{stop}]", shuffle_files=False,
                              read_config=tfds.ReadConfig(try_autocache=False))


def precache_examples(name: str, split: str, options: CorpusOptions, vocab_file: str,
                      start: int = 0, stop: int | None = None) -> Iterator[dict]:
    """The examples of family task `name` as the cache holds them, from raw
    documents start .. stop - 1 of the split: its registered preprocessors up
    to the CacheDatasetPlaceholder, with the corpus options and vocabulary
    passed in (a Beam worker has no gin)."""
    from codemix.data import tasks

    registered = seqio.TaskRegistry.get(tasks.ensure_registered(name))
    spec = TASKS[name]

    def source_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
        end = stop if stop is not None else raw_documents(spec.family, split, options)
        ds = _range_dataset(spec.family, split, start, end, options)
        if spec.source_regex:
            ds = ds.filter(lambda x: tf.strings.regex_full_match(x["source"], spec.source_regex))
        return ds.map(lambda x: {"text": x["text"]})

    vocab = seqio.SentencePieceVocabulary(vocab_file)
    task = seqio.Task(name, source=seqio.FunctionDataSource(source_fn, splits=SPLITS),
                      output_features={"targets": seqio.Feature(vocab, add_eos=True)},
                      preprocessors=registered.preprocessors)
    ds = task.preprocess_precache(task.source.get_dataset(split=split, shuffle=False))
    yield from ds.as_numpy_iterator()


def raw_documents(family: str, split: str, options: CorpusOptions) -> int:
    from codemix.data import corpora

    return int(corpora.prepare(family, options).info.splits[split].num_examples)


class _Tokenize:
    """(unit, start, stop) -> (unit, i, token ids) for the i-th kept document of the range."""

    def __init__(self, name, split, options, vocab_file):
        self.args = (name, split, options, vocab_file)

    def __call__(self, unit):
        index, start, stop = unit
        name, split, options, vocab_file = self.args
        for i, ex in enumerate(precache_examples(name, split, options, vocab_file, start, stop)):
            yield index, i, ex["targets"]


def _offsets(counts: dict, units: int) -> dict:
    """Kept documents per range -> the index d of each range's first kept document."""
    out, total = {}, 0
    for u in range(units):
        out[u] = total
        total += counts.get(u, 0)
    return out


class _WriteShard:
    """(shard, [(d, ids) or None, ...]) -> the shard file written in increasing d; its manifest entry."""

    def __init__(self, out: str, split: str, write_id: str, num_shards: int):
        self.out, self.split, self.write_id, self.num_shards = out, split, write_id, num_shards

    def __call__(self, kv):
        shard, items = kv
        docs = sorted((x for x in items if x is not None), key=lambda x: x[0])
        file = shard_name(self.split, self.write_id, shard, self.num_shards)
        path = os.path.join(self.out, file)
        with tf.io.TFRecordWriter(path + ".incomplete") as writer:
            for _, ids in docs:
                writer.write(seqio.dict_to_tfexample({"targets": ids}).SerializeToString())
        tf.io.gfile.rename(path + ".incomplete", path, overwrite=True)
        return {"shard": shard, "file": file, "documents": len(docs), "bytes": tf.io.gfile.stat(path).length}


def _write_manifest(entries: list[dict], path: str, write_id: str, num_shards: int) -> None:
    entries = sorted(entries, key=lambda e: e["shard"])
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump({"write_id": write_id, "num_shards": num_shards,
                   "documents": sum(e["documents"] for e in entries), "shards": entries}, f, indent=1)


def build(names: Sequence[str], root: str, vocab_file: str, options: CorpusOptions, settings,
          overwrite: bool = False, num_shards: int = DEFAULT_SHARDS,
          unit_documents: int = UNIT_DOCUMENTS) -> dict[str, str]:
    """Cache family tasks `names` under `root` with one Beam pipeline
    (beam_prepare.BeamSettings `settings`), each split in `num_shards`
    shards; {task: "cached" | "up to date"}. `unit_documents` raw documents
    are one work item (the unit of parallelism)."""
    import uuid

    import apache_beam as beam
    from seqio import beam_utils

    from codemix.data import corpora

    if num_shards < 1 or unit_documents < 1:
        raise DataError(f"num_shards={num_shards} and unit_documents={unit_documents} must be positive.")
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
    write_id = uuid.uuid4().hex[:8]
    with beam.Pipeline(options=settings.pipeline_options()) as p:
        for name, _ in todo:
            out = task_cache_dir(root, name)
            tf.io.gfile.makedirs(out)
            for split in SPLITS:
                label = f"{name}_{split}"
                n = raw_documents(TASKS[name].family, split, options)
                units = [(u, a, min(a + unit_documents, n)) for u, a in enumerate(range(0, n, unit_documents))]
                docs = (p | f"{label}_units" >> beam.Create(units)
                        | f"{label}_spread" >> beam.Reshuffle()
                        | f"{label}_tokenize" >> beam.FlatMap(_Tokenize(name, split, options, vocab_file)))
                offsets = (docs | f"{label}_one" >> beam.Map(lambda x: (x[0], 1))
                           | f"{label}_per_unit" >> beam.CombinePerKey(sum)
                           | f"{label}_counts" >> beam.combiners.ToDict()
                           | f"{label}_offsets" >> beam.Map(_offsets, units=len(units)))
                keyed = docs | f"{label}_index" >> beam.Map(
                    lambda x, off, s=num_shards: ((off[x[0]] + x[1]) % s, (off[x[0]] + x[1], x[2])),
                    off=beam.pvalue.AsSingleton(offsets))
                every = p | f"{label}_all_shards" >> beam.Create([(s, None) for s in range(num_shards)])
                entries = ((keyed, every) | f"{label}_flatten" >> beam.Flatten()
                           | f"{label}_by_shard" >> beam.GroupByKey()
                           | f"{label}_write" >> beam.Map(_WriteShard(out, split, write_id, num_shards)))
                _ = (entries | f"{label}_entries" >> beam.combiners.ToList()
                     | f"{label}_manifest" >> beam.Map(_write_manifest, manifest_path(root, name, split),
                                                       write_id, num_shards))
                examples = keyed | f"{label}_examples" >> beam.Map(lambda kv: {"targets": kv[1][1]})
                _ = (examples | f"{label}_info" >> beam_utils.GetInfo(num_shards)
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
        log.info("cached %s in %s (%d shards per split, write %s)", name, out, num_shards, write_id)
    return status
