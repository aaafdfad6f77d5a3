"""Corpus builders: raw documents -> filtered, deduplicated, split TFDS datasets.

One TFDS `GeneratorBasedBuilder` per data family (text, code_web, markup,
code_adjacent, code_synthetic). Each has two configs:
  local: the embedded default, read from the family's declared sources (the
         stdlib, pinned packages, Debian changelogs: codemix/data/local_sources.py,
         never whatever else is installed); capped at
         `CorpusOptions.local_max_bytes`.
  full:  the user's raw files (`CorpusOptions.raw_paths[family]`, local or gs://).

What every builder does, in order (each drop is counted under its rule name and
kept in the prepared dataset's metadata, `info.metadata["stats"]`):
  1. read documents from the family's sources, each with provenance
     (family, package or file it came from, path inside it, language);
  2. family-specific filters (e.g. the code detector for text);
  3. optionally drop documents that share a 13-gram with an evaluation set
     (`CorpusOptions.drop_contaminated`);
  4. drop exact duplicates (same text, first kept);
  5. hold out a validation split: a document is in "validation" when a stable
     hash of its text falls in `validation_fraction`, so the split is the same
     on every machine and does not depend on read order (the first kept
     document also goes there, so the split is never empty).

Preparing streams: each split's pass re-reads the sources and keeps only a
16-byte hash per document for deduplication, so a `full` corpus need not fit
in memory (the hash set does: ~100 bytes per document in Python).

Preparation is lazy: nothing is read or written until a task's data is first
used (`codemix.data.corpora.prepare()`, which also looks up each family's
builder, so this module does not import the families that subclass it);
prepared data lives under
`<data_dir>/<options fingerprint>/<builder>/<config>/<version>`.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping

import tensorflow as tf
import tensorflow_datasets as tfds

import gin
from codemix.data import local_sources
from codemix.data.readers import DataError

log = logging.getLogger(__name__)

FAMILIES = ("text", "code_web", "markup", "code_adjacent", "code_synthetic")
CODE_FAMILIES = ("code_web", "markup", "code_adjacent", "code_synthetic")
DEFAULT_DATA_DIR = os.path.join(os.path.expanduser("~"), ".cache", "codemix", "tfds")


@dataclasses.dataclass(frozen=True)
class Doc:
    """One document with its provenance."""

    text: str
    family: str
    source: str  # "name==version" of a declared local source (local_sources.py), or a raw file
    path: str  # file inside the source (or "file:line" for raw JSONL)
    language: str  # "en" for prose; programming/markup language otherwise


@gin.configurable
@dataclasses.dataclass(frozen=True)
class CorpusOptions:
    """Where corpora are prepared and how.

    Attributes:
      data_dir: root for prepared TFDS data (local or gs://). Default
        ~/.cache/codemix/tfds so the embedded corpora are prepared once per machine.
      local_max_bytes: cap on a `local` corpus, in UTF-8 bytes of text per family
        (3 MB: enough text for the laptop-scale demo, small enough to prepare
        quickly; benchmarks/ measures how long).
      validation_fraction: fraction of documents held out (0..1) per family.
      raw_paths: family -> file/folder/glob of the user's raw data; a family
        listed here uses its `full` config, the others their `local` config.
      max_bad_lines: malformed JSONL lines tolerated per family before it is an error.
      max_bad_files: truncated or corrupt compressed (.zst, .gz) files tolerated per
        family before it is an error; their readable records are kept and the
        lost ones counted. 0 by default: a damaged download should be fixed, not
        trained around without anyone noticing.
      drop_contaminated: drop documents sharing a 13-gram with the eval sets.
    """

    data_dir: str = DEFAULT_DATA_DIR
    local_max_bytes: int = 3_000_000
    validation_fraction: float = 0.05
    raw_paths: Mapping[str, str] = dataclasses.field(default_factory=dict)
    max_bad_lines: int = 100
    max_bad_files: int = 0
    drop_contaminated: bool = False

    def config_for(self, family: str) -> str:
        return "full" if family in dict(self.raw_paths) else "local"

    def fingerprint(self, family: str) -> str:
        """Short hash of every option that changes this family's prepared data,
        and of its inputs: for a `full` config the raw files themselves
        (`raw_files_key`: adding, removing or rewriting an input file prepares
        the corpus again); for a `local` config the declared sources, each with
        its version and file manifest (`local_sources.fingerprint_key`: another
        Python, another pinned package or another Debian changelog is another
        corpus; other installed packages are not read and change nothing)."""
        raw = dict(self.raw_paths).get(family)
        key = {
            "config": self.config_for(family),
            "max_bytes": self.local_max_bytes,
            "validation_fraction": self.validation_fraction,
            "raw": raw,
            "max_bad_lines": self.max_bad_lines,
            "drop_contaminated": self.drop_contaminated,
        }
        if self.max_bad_files:  # absent at 0 so corpora prepared before the option keep their key
            key["max_bad_files"] = self.max_bad_files
        if raw:
            key["raw_files"] = raw_files_key(raw, exclude=self.data_dir)
        else:
            key["sources"] = local_sources.fingerprint_key(family)
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]


def raw_files_key(pattern: str, exclude: str | None = None) -> str:
    """Hash of (name, size, mtime) of every file a raw path covers: a file, a
    glob, or a folder (walked recursively, as the Stack and code_adjacent
    layouts are), leaving out the prepared data under `exclude` (a data_dir
    inside the raw folder). Listing only; no file is read."""
    entries = []
    skip = exclude.rstrip("/") + "/" if exclude else None
    roots = [pattern] if tf.io.gfile.exists(pattern) else sorted(tf.io.gfile.glob(pattern))
    for root in roots:
        if tf.io.gfile.isdir(root):
            files = [os.path.join(d, f) for d, _, fs in tf.io.gfile.walk(root) for f in fs]
        else:
            files = [root]
        for f in files:
            if skip and (f + "/").startswith(skip):
                continue
            st = tf.io.gfile.stat(f)
            entries.append((f, st.length, st.mtime_nsec))
    return hashlib.sha256(json.dumps(sorted(entries)).encode()).hexdigest()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def is_validation(key: str, fraction: float) -> bool:
    """Stable split assignment from a hex hash."""
    return int(key[:8], 16) % 10_000 < fraction * 10_000


def cap_bytes(docs: Iterator[Doc], max_bytes: int, counts: collections.Counter) -> Iterator[Doc]:
    """Documents until `max_bytes` of text; one that would overflow is skipped
    (counted as over_local_cap) and reading stops once the cap is nearly full,
    so unread candidates are neither read nor counted."""
    total = 0
    for d in docs:
        n = len(d.text.encode("utf-8", "surrogatepass"))
        if total + n > max_bytes and total > 0:
            counts["over_local_cap"] += 1
            if total > 0.98 * max_bytes or counts["over_local_cap"] > 1000:
                return
            continue
        total += n
        yield d


@dataclasses.dataclass(frozen=True)
class Shard:
    """One raw file of a full corpus: `kind` says which of its family's readers
    reads it ("jsonl", "parquet", "notebook", ...), `language` is set where the
    folder, not the file, names it (The Stack)."""

    kind: str
    file: str
    language: str = ""


def load_contamination(options: CorpusOptions):
    """The evaluation sets' 13-grams when `drop_contaminated`, else None."""
    if not options.drop_contaminated:
        return None
    from codemix.data import contamination as cont

    return cont.EvalNgrams.load()


def drop_rule(d: Doc, contamination) -> str | None:
    """The rule that drops `d` before deduplication (empty, contaminated), or None."""
    if not d.text.strip():
        return "empty"
    if contamination is not None and contamination.overlaps(d.text):
        return "contaminated"
    return None


def digest_of(d: Doc) -> tuple[str, bytes]:
    """(hex text hash, its first 16 bytes: the deduplication key)."""
    key = text_hash(d.text)
    return key, bytes.fromhex(key[:32])


def split_of(key: str, first: bool, fraction: float) -> str:
    """The first kept document and those whose hash falls in `fraction` are validation."""
    return "validation" if first or is_validation(key, fraction) else "train"


def example_of(d: Doc) -> dict[str, str]:
    return {"text": d.text, "family": d.family, "source": d.source, "path": d.path, "language": d.language}


class CorpusBuilder(tfds.core.GeneratorBasedBuilder):
    """Base for the five family builders; subclasses set FAMILY and readers."""

    FAMILY = ""
    RULES: tuple[str, ...] = ()  # drop rules reported even when they dropped nothing
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "First release.", "1.1.0": "Streaming preparation; first document to validation."}  # noqa: RUF012  (TFDS convention)
    BUILDER_CONFIGS = [  # noqa: RUF012  (TFDS convention)
        tfds.core.BuilderConfig(name="local", description="embedded default from installed packages"),
        tfds.core.BuilderConfig(name="full", description="the user's raw files (CorpusOptions.raw_paths)"),
    ]

    def __init__(self, *, options: CorpusOptions | None = None, **kwargs):
        self.options = options or CorpusOptions()
        super().__init__(**kwargs)

    # Subclasses: yield Docs; count drops in `counts` under the rule's name.
    def local_documents(self, options: CorpusOptions, counts: collections.Counter) -> Iterator[Doc]:
        raise NotImplementedError

    def full_shards(self, path: str, options: CorpusOptions, counts: collections.Counter) -> list[Shard]:
        """The raw files of a full corpus, in read order (listing only)."""
        raise NotImplementedError

    @classmethod
    def shard_documents(cls, shard: Shard, options: CorpusOptions, counts: collections.Counter,
                        max_bad_lines: float, max_bad_files: float) -> Iterator[Doc]:
        """One raw file's documents after the family's filters (drops counted in
        `counts`); the in-process path passes the options' limits and one
        counter for all files, the Beam path unlimited ones per file and checks
        the totals against the limits after the run."""
        raise NotImplementedError

    def full_documents(self, path: str, options: CorpusOptions, counts: collections.Counter) -> Iterator[Doc]:
        for shard in self.full_shards(path, options, counts):
            yield from self.shard_documents(shard, options, counts, options.max_bad_lines, options.max_bad_files)

    def _info(self) -> tfds.core.DatasetInfo:
        text = tfds.features.Text()
        return self.dataset_info_from_configs(
            description=f"codemix {self.FAMILY} corpus ({self.builder_config.name})",
            features=tfds.features.FeaturesDict(
                {"text": text, "family": text, "source": text, "path": text, "language": text}
            ),
            metadata=tfds.core.MetadataDict(),
        )

    def base_rules(self) -> tuple[str, ...]:
        """Drop rules reported even when they dropped nothing."""
        return ("empty", "exact_duplicate") + self.RULES + (("contaminated",) if self.options.drop_contaminated else ())

    def raw_path(self) -> str:
        path = dict(self.options.raw_paths).get(self.FAMILY)
        if not path:
            raise DataError(
                f"family {self.FAMILY!r}: the full config needs CorpusOptions.raw_paths["
                f"{self.FAMILY!r}] (a file, folder or glob, local or gs://)."
            )
        return path

    def _kept(self, counts: collections.Counter) -> Iterator[tuple[str, Doc]]:
        """(split, document) for every kept document, in read order.

        Deterministic: the same sources give the same stream, so each split's
        pass can re-read the sources instead of holding documents in memory.
        The first kept document always goes to validation so that split is
        never empty; the rest by their text hash. The Beam path
        (codemix/data/beam_prepare.py) calls the same per-document functions
        (`drop_rule`, `digest_of`, `split_of`) and keeps, of each set of
        duplicates, the one read first, as this loop does.
        """
        options = self.options
        for rule in self.base_rules():
            counts[rule] += 0
        if self.builder_config.name == "full":
            docs = self.full_documents(self.raw_path(), options, counts)
        else:
            docs = cap_bytes(self.local_documents(options, counts), options.local_max_bytes, counts)
        contamination = load_contamination(options)
        seen: set[bytes] = set()
        first = True
        for d in docs:
            counts["documents_read"] += 1
            rule = drop_rule(d, contamination)
            if rule:
                counts[rule] += 1
                continue
            key, digest = digest_of(d)
            if digest in seen:
                counts["exact_duplicate"] += 1
                continue
            seen.add(digest)
            split = split_of(key, first, options.validation_fraction)
            first = False
            yield split, d

    def _stats(self, counts: collections.Counter, per_split: dict[str, dict]) -> dict:
        counts = collections.Counter(counts)
        read = counts.pop("documents_read", 0)
        if not sum(s["documents"] for s in per_split.values()):
            raise DataError(
                f"family {self.FAMILY!r} ({self.builder_config.name}) found no documents "
                f"(dropped: {dict(counts)}); check its sources or raw_paths."
            )
        local = self.builder_config.name == "local"
        return {
            "family": self.FAMILY,
            "config": self.builder_config.name,
            "fingerprint": self.options.fingerprint(self.FAMILY),
            # the declared sources with their versions, and warnings about optional ones left out
            **(local_sources.provenance(self.FAMILY) if local else {}),
            "documents_read": read + counts["over_local_cap"],
            "local_cap_bytes": self.options.local_max_bytes if local else None,
            "dropped": dict(sorted(counts.items())),
            "documents": {k: v["documents"] for k, v in per_split.items()},
            "bytes": {k: v["bytes"] for k, v in per_split.items()},
            "by_source": dict(sum((v["by_source"] for v in per_split.values()), collections.Counter()).most_common(20)),
            "by_language": dict(sum((v["by_language"] for v in per_split.values()), collections.Counter())),
        }

    def collect(self) -> tuple[dict[str, list[Doc]], dict]:
        """Read, filter, dedup and split in memory (small corpora and tests);
        preparing streams instead (`_split_generators`)."""
        counts: collections.Counter = collections.Counter()
        out: dict[str, list[Doc]] = {"train": [], "validation": []}
        for split, d in self._kept(counts):
            out[split].append(d)
        per_split = {k: {"documents": len(v), "bytes": sum(len(d.text.encode("utf-8", "surrogatepass")) for d in v),
                         "by_source": collections.Counter(d.source for d in v),
                         "by_language": collections.Counter(d.language for d in v)} for k, v in out.items()}
        return out, self._stats(counts, per_split)

    beam = None  # a beam_prepare.BeamSettings: prepare the full config as one Beam pipeline

    def _split_generators(self, dl_manager):
        if self.beam is not None and self.builder_config.name == "full":
            return self.beam.split_transforms(self)  # corpus.py imports no Beam (nor beam_prepare)
        self._passes: dict[str, dict] = {}
        return {split: self._generate_examples(split) for split in ("train", "validation")}

    def _generate_examples(self, split: str):
        counts: collections.Counter = collections.Counter()
        info = {"documents": 0, "bytes": 0, "by_source": collections.Counter(), "by_language": collections.Counter()}
        for i, (s, d) in enumerate(self._kept(counts)):
            if s != split:
                continue
            info["documents"] += 1
            info["bytes"] += len(d.text.encode("utf-8", "surrogatepass"))
            info["by_source"][d.source] += 1
            info["by_language"][d.language] += 1
            yield i, example_of(d)
        if not info["documents"] and split == "train":
            raise DataError(
                f"family {self.FAMILY!r} ({self.builder_config.name}) has no training documents "
                f"(dropped: {dict(counts)}); it needs at least two distinct documents."
            )
        self._passes[split] = info
        self._counts = counts  # every pass sees every document: the drop counts are the same
        if len(self._passes) == 2:
            stats = self._stats(self._counts, self._passes)
            self.info.metadata["stats"] = stats
            log.info("corpus %s/%s: %s", self.FAMILY, self.builder_config.name, json.dumps(stats))


    def _process_pipeline_result(self, pipeline_result) -> None:
        self.beam.finish(self, pipeline_result)


BUILDERS: dict[str, type[CorpusBuilder]] = {}  # family -> builder; filled by codemix/data/families/*


def register_builder(cls: type[CorpusBuilder]) -> type[CorpusBuilder]:
    BUILDERS[cls.FAMILY] = cls
    return cls


DocSource = Callable[[CorpusOptions, collections.Counter], Iterator[Doc]]
