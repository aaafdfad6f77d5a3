"""Full corpora prepared as one Apache Beam pipeline per family.

The same code runs on Beam's DirectRunner here (`multi_processing` with N
workers) and on Dataflow, Flink or Spark for a real corpus. It gives the same
documents, drop counts and splits as the in-process path (corpus.py, `_kept`),
because both call the same per-file readers (`CorpusBuilder.shard_documents`)
and per-document functions (`drop_rule`, `digest_of`, `split_of`):

  raw files, listed on the driver in read order (`full_shards`: listing only)
   -> Reshuffle, so files are read in parallel
   -> ReadShard: one file's documents after the family's filters, then the
      empty and contamination rules; every drop is a `Metrics.counter` in the
      "codemix" namespace under its rule's name
   -> CombinePerKey on the 16-byte text digest: exact deduplication as a
      distributed grouping; the representative is the copy read first (the
      smallest (file index, position)), which is the one `_kept` keeps
   -> the smallest order over the kept documents goes to validation (as the
      first kept document does in-process); the rest by the text hash
   -> TFDS's BeamWriter per split: the same files and format, so the SeqIO
      tasks read a Beam-prepared corpus unchanged (examples keyed by `path`,
      which is unique per raw record; the in-process keys are read positions).

Damaged input is never fatal inside a worker and never silent: a file with
malformed lines, a truncated or corrupt compressed stream, invalid UTF-8 or a
Parquet file without the expected column sends a report (its counts per rule
and its error) to a side output. After the run, `finish` walks the reports in
read order and raises the DataError the in-process path would have raised
(the same `max_bad_lines` / `max_bad_files` limits over all files, the same
message for an unreadable file), naming the file; otherwise the per-rule
counts (Beam metrics) are merged into `info.metadata["stats"]` as before, with
`problem_files` listing each damaged file's counts.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import shlex
from collections.abc import Mapping

import apache_beam as beam
import tensorflow as tf
from apache_beam.metrics.metric import Metrics, MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from codemix.data.corpus import (
    CorpusBuilder,
    CorpusOptions,
    digest_of,
    drop_rule,
    example_of,
    load_contamination,
    split_of,
)
from codemix.data import readers
from codemix.data.readers import DataError

log = logging.getLogger(__name__)

NAMESPACE = "codemix"
PROBLEM_RULES = ("malformed_json", "invalid_utf8", "damaged_compressed_files", "records_lost_in_damaged_files")
RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner")


@dataclasses.dataclass(frozen=True)
class BeamSettings:
    """Which Beam runner prepares a full corpus, and its pipeline options.

    Attributes:
      runner: a Beam runner name (RUNNERS); DirectRunner runs on this machine.
      options: pipeline options passed through as `--key=value` (e.g. for
        Dataflow project, region, temp_location, requirements_file).
    """

    runner: str = "DirectRunner"
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def local(cls, workers: int) -> BeamSettings:
        """DirectRunner with `workers` processes on this machine."""
        return cls("DirectRunner", {"direct_num_workers": str(workers), "direct_running_mode": "multi_processing"})

    def args(self) -> list[str]:
        return [f"--runner={self.runner}"] + [f"--{k}={v}" for k, v in sorted(dict(self.options).items())]

    def pipeline_options(self) -> PipelineOptions:
        return PipelineOptions(self.args())

    # The builder's Beam hooks go through its settings, so corpus.py needs no
    # import of this module (which imports corpus.py: an import cycle).
    def split_transforms(self, builder: CorpusBuilder) -> dict[str, beam.PTransform]:
        return split_transforms(builder)

    def finish(self, builder: CorpusBuilder, result) -> None:
        finish(builder, result)


def parse_options(text: str) -> dict[str, str]:
    """'k=v,k2=v2' -> {k: v, k2: v2}; DataError naming the bad item."""
    out: dict[str, str] = {}
    for item in filter(None, (t.strip() for t in (text or "").split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise DataError(f"--beam_options item {item!r} is not key=value (e.g. "
                            f"'project=my-project,region=us-central1,temp_location=gs://bucket/tmp').")
        out[key] = value.strip()
    return out


def settings_for(runner: str, options_text: str = "") -> BeamSettings:
    if runner not in RUNNERS:
        raise DataError(f"unknown --beam_runner {runner!r}; use one of {list(RUNNERS)}.")
    return BeamSettings(runner, parse_options(options_text))


class _ReadShard(beam.DoFn):
    """(index, shard) -> (digest, ((index, position), hex hash, doc)) per kept
    document; a report on the "reports" output for a damaged file."""

    def __init__(self, family: str, options: dict):
        self.family = family
        self.options_dict = options

    def setup(self):
        from codemix.data import corpora

        self.cls = corpora.builder_class(self.family)
        self.options = CorpusOptions(**self.options_dict)
        self.contamination = load_contamination(self.options)

    def process(self, item):
        index, shard = item
        counts: collections.Counter = collections.Counter()
        error = None
        try:
            docs = self.cls.shard_documents(shard, self.options, counts, math.inf, math.inf)
            for position, d in enumerate(docs):
                counts["documents_read"] += 1
                rule = drop_rule(d, self.contamination)
                if rule:
                    counts[rule] += 1
                    continue
                key, digest = digest_of(d)
                yield digest, ((index, position), key, d)
        except DataError as e:  # reported with the file's counts; `finish` raises it
            error = str(e)
        for rule, n in counts.items():
            if n:
                Metrics.counter(NAMESPACE, rule).inc(n)
        if error or any(counts[r] for r in PROBLEM_RULES):
            yield beam.pvalue.TaggedOutput("reports", json.dumps(
                {"index": index, "file": shard.file, "counts": dict(counts), "error": error}))


class _FirstRead(beam.CombineFn):
    """Of a digest's copies: the one read first, and how many there were."""

    def create_accumulator(self):
        return None

    def add_input(self, acc, value):
        order, key, doc = value
        if acc is None:
            return (order, key, doc, 1)
        best = (order, key, doc) if tuple(order) < tuple(acc[0]) else acc[:3]
        return (*best, acc[3] + 1)

    def merge_accumulators(self, accs):
        out = None
        for acc in accs:
            if acc is None:
                continue
            if out is None:
                out = acc
            else:
                best = acc[:3] if tuple(acc[0]) < tuple(out[0]) else out[:3]
                out = (*best, out[3] + acc[3])
        return out

    def extract_output(self, acc):
        return acc


class _SplitStats(beam.CombineFn):
    """(split, doc) -> {split: {documents, bytes, by_source, by_language}}."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, value):
        split, d = value
        s = acc.setdefault(split, {"documents": 0, "bytes": 0, "by_source": {}, "by_language": {}})
        s["documents"] += 1
        s["bytes"] += len(d.text.encode("utf-8", "surrogatepass"))
        s["by_source"][d.source] = s["by_source"].get(d.source, 0) + 1
        s["by_language"][d.language] = s["by_language"].get(d.language, 0) + 1
        return acc

    def merge_accumulators(self, accs):
        out: dict = {}
        for acc in accs:
            for split, s in acc.items():
                o = out.setdefault(split, {"documents": 0, "bytes": 0, "by_source": {}, "by_language": {}})
                o["documents"] += s["documents"]
                o["bytes"] += s["bytes"]
                for field in ("by_source", "by_language"):
                    for k, v in s[field].items():
                        o[field][k] = o[field].get(k, 0) + v
        return out

    def extract_output(self, acc):
        return acc


def _assign(kv, first, fraction: float):
    order, key, doc, copies = kv[1]
    if copies > 1:
        Metrics.counter(NAMESPACE, "exact_duplicate").inc(copies - 1)
    return split_of(key, tuple(order) == tuple(first), fraction), doc


def _reports_prefix(builder: CorpusBuilder) -> str:
    return f"{builder.data_dir.rstrip('/')}/beam_reports/"


class _Shared:
    """Builds the read -> dedup -> split part once; both splits' writers read it."""

    def __init__(self, builder: CorpusBuilder):
        self.builder = builder
        self.assigned = None

    def get(self, pipeline):
        if self.assigned is None:
            self.assigned = self._build(pipeline)
        return self.assigned

    def _build(self, pipeline):
        b = self.builder
        listing: collections.Counter = collections.Counter()
        shards = b.full_shards(b.raw_path(), b.options, listing)
        b._beam_listing = listing
        log.info("beam: %s has %d raw files", b.FAMILY, len(shards))
        prefix = _reports_prefix(b)
        read = (pipeline
                | "Shards" >> beam.Create(list(enumerate(shards)))
                | "Spread" >> beam.Reshuffle()
                | "Read" >> beam.ParDo(_ReadShard(b.FAMILY, dataclasses.asdict(b.options))).with_outputs(
                    "reports", main="docs"))
        _ = read.reports | "WriteReports" >> beam.io.WriteToText(prefix + "files", file_name_suffix=".jsonl")
        kept = read.docs | "FirstOfDuplicates" >> beam.CombinePerKey(_FirstRead())
        first = (kept | "Order" >> beam.Map(lambda kv: tuple(kv[1][0]))
                 | "FirstKept" >> beam.CombineGlobally(lambda orders: min(orders, default=(-1, -1))))
        assigned = kept | "AssignSplit" >> beam.Map(
            _assign, first=beam.pvalue.AsSingleton(first), fraction=b.options.validation_fraction)
        _ = (assigned | "SplitStats" >> beam.CombineGlobally(_SplitStats())
             | "StatsJson" >> beam.Map(json.dumps)
             | "WriteStats" >> beam.io.WriteToText(prefix + "splits", file_name_suffix=".json"))
        return assigned


class _SplitExamples(beam.PTransform):
    def __init__(self, shared: _Shared, split: str):
        super().__init__()
        self.shared, self.split = shared, split

    def expand(self, pbegin):
        split = self.split
        return (self.shared.get(pbegin.pipeline)
                | "Select" >> beam.Filter(lambda sd: sd[0] == split)
                | "Example" >> beam.Map(lambda sd: (sd[1].path, example_of(sd[1]))))


def split_transforms(builder: CorpusBuilder) -> dict[str, beam.PTransform]:
    """The builder's `_split_generators` for a Beam run: one PTransform per split."""
    shared = _Shared(builder)
    return {split: _SplitExamples(shared, split) for split in ("train", "validation")}


def metric_counts(result) -> collections.Counter:
    """The "codemix" counters of a finished pipeline (committed where the runner has them)."""
    counts: collections.Counter = collections.Counter()
    for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        counts[c.key.metric.name] += int(value or 0)
    return counts


def check_reports(reports: list[dict], options: CorpusOptions) -> None:
    """Raise, in read order, the DataError the in-process path would raise."""
    bad_lines = bad_files = 0
    for r in sorted(reports, key=lambda r: r["index"]):
        n = readers.bad_lines(r["counts"])
        bad_lines += n
        if n and bad_lines > options.max_bad_lines:
            raise DataError(
                f"{r['file']}: {n} malformed JSON or invalid UTF-8 line(s); {bad_lines} unreadable lines up to "
                f"this file exceed "
                f"max_bad_lines={options.max_bad_lines}. Fix or drop the file, or raise CorpusOptions.max_bad_lines.")
        damaged = r["counts"].get("damaged_compressed_files", 0)
        bad_files += damaged
        if damaged and bad_files > options.max_bad_files:
            raise DataError(
                f"{r['file']}: truncated or corrupt compressed file (~{r['counts'].get('records_lost_in_damaged_files', 0)}"
                f" records lost); {bad_files} damaged file(s) exceed max_bad_files={options.max_bad_files}: "
                f"re-download or re-compress the file, drop it from the glob, or raise CorpusOptions.max_bad_files.")
        if r["error"]:
            raise DataError(r["error"])


def _read_json_lines(pattern: str) -> list:
    out = []
    for path in sorted(tf.io.gfile.glob(pattern)):
        with tf.io.gfile.GFile(path) as f:
            out += [json.loads(line) for line in f if line.strip()]
    return out


def finish(builder: CorpusBuilder, result) -> None:
    """After the run: limits over the damaged files, then the stats."""
    prefix = _reports_prefix(builder)
    try:
        reports = _read_json_lines(prefix + "files*")
        check_reports(reports, builder.options)
        splits = _read_json_lines(prefix + "splits*")
    finally:
        if tf.io.gfile.exists(prefix):
            tf.io.gfile.rmtree(prefix)
    counts = collections.Counter({rule: 0 for rule in builder.base_rules()})
    counts.update(getattr(builder, "_beam_listing", {}))
    counts.update(metric_counts(result))
    empty = {"documents": 0, "bytes": 0, "by_source": {}, "by_language": {}}
    merged = splits[0] if splits else {}
    per_split = {}
    for split in ("train", "validation"):
        s = merged.get(split, empty)
        per_split[split] = {**s, "by_source": collections.Counter(s["by_source"]),
                            "by_language": collections.Counter(s["by_language"])}
    if not per_split["train"]["documents"]:
        raise DataError(
            f"family {builder.FAMILY!r} (full, Beam) has no training documents "
            f"(dropped: {dict(counts)}); it needs at least two distinct documents.")
    stats = builder._stats(counts, per_split)
    stats["problem_files"] = {r["file"]: {k: v for k, v in r["counts"].items() if k in PROBLEM_RULES}
                              for r in sorted(reports, key=lambda r: r["index"])}
    builder.info.metadata["stats"] = stats
    log.info("corpus %s/full (Beam): %s", builder.FAMILY, json.dumps(stats))


def prepare(family: str, options: CorpusOptions, settings: BeamSettings) -> CorpusBuilder:
    """Prepare `family`'s full config on Beam once (no-op when already prepared)."""
    import tensorflow_datasets as tfds

    from codemix.data import corpora

    builder = corpora.get_builder(family, options)
    if builder.builder_config.name != "full":
        raise DataError(f"family {family!r} has no raw_paths entry, so it uses its embedded local config, "
                        f"which is prepared in-process; pass --raw_path to prepare a full corpus on Beam.")
    if tf.io.gfile.exists(f"{builder.data_dir}/dataset_info.json"):
        log.info("corpus %s (full) already prepared in %s", family, builder.data_dir)
        return builder
    builder.beam = settings
    tfds.display_progress_bar(False)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        verify_ssl=False, try_download_gcs=False, beam_options=settings.pipeline_options()))
    return corpora.get_builder(family, options)


def dry_run(family: str, options: CorpusOptions, settings: BeamSettings, argv: list[str]) -> str:
    """The pipeline options and the exact command that submits this preparation."""
    lines = [f"family: {family} (full), raw files: {dict(options.raw_paths).get(family)}",
             f"output: {options.data_dir}/<fingerprint of the options and raw file listing>/ (not listed here)",
             "pipeline options:"]
    lines += [f"  {a}" for a in settings.args()]
    if settings.runner == "DataflowRunner":
        missing = [k for k in ("project", "region", "temp_location") if k not in settings.options]
        if missing:
            lines.append(f"  (Dataflow also needs {', '.join(missing)}; add them to --beam_options)")
        if "requirements_file" not in settings.options and "setup_file" not in settings.options:
            lines.append("  (workers install codemix from a requirements file: add "
                         "requirements_file=<file listing codemix and apache-beam[gcp]>)")
        if not str(options.data_dir).startswith("gs://"):
            lines.append("  (Dataflow workers write the corpus: set CorpusOptions.data_dir to a gs:// path)")
    lines += ["command:", "  " + shlex.join(a for a in argv if a != "--dry_run")]
    return "\n".join(lines)
