"""The Beam flags of `codemix data prepare` and `codemix data cache`, and what they run.

  codemix data prepare --family text --raw_path text=gs://b/slimpajama/*.jsonl.zst \\
      --beam_runner DirectRunner --direct_num_workers 2 --direct_running_mode multi_processing
  codemix data prepare --family text --beam_runner DataflowRunner \\
      --beam_options project=P,region=us-central1,temp_location=gs://b/tmp,requirements_file=req.txt --dry_run
  codemix data cache --mixture balanced --output gs://b/cache --beam_runner DataflowRunner --beam_options ...

Without --beam_runner, prepare runs in-process as before. Nothing here imports
Beam until a Beam run is asked for, so `--help` stays fast.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from codemix.data.readers import DataError


def _add_runner_arguments(p: argparse.ArgumentParser, default_runner: str | None, runner_help: str) -> None:
    """The Beam runner flags shared by `data prepare` and `data cache`."""
    p.add_argument("--beam_runner", default=default_runner, help=runner_help)
    p.add_argument("--beam_options", default="", help="pipeline options k=v,k=v passed through to the runner.")
    p.add_argument("--direct_num_workers", type=int, default=None, help="DirectRunner worker count.")
    p.add_argument("--direct_running_mode", default=None,
                   help="DirectRunner mode: in_memory, multi_threading or multi_processing.")


def add_prepare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--raw_path", action="append", default=[], metavar="FAMILY=PATH",
                   help="raw files of a family's full config (file, folder or glob, local or gs://); "
                        "same as CorpusOptions.raw_paths (repeatable).")
    _add_runner_arguments(p, None, "prepare full configs on Apache Beam: DirectRunner, DataflowRunner, "
                                   "FlinkRunner, SparkRunner.")
    p.add_argument("--dry_run", action="store_true",
                   help="print the pipeline options and the command that submits it; run nothing.")


def add_cache_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mixture", required=True, help="mixture (or family task) whose family tasks are cached.")
    p.add_argument("--output", required=True,
                   help="cache root, local or gs://; training reads it with make_train_iterator.cache_dir.")
    _add_runner_arguments(p, "DirectRunner", "DirectRunner (default), DataflowRunner, FlinkRunner or SparkRunner.")
    p.add_argument("--overwrite", action="store_true",
                   help="rebuild task caches that exist (also ones made with another vocabulary).")
    p.add_argument("--num_shards", type=int, default=None,
                   help="shards per task split (default 512: 8 readers per host on a 64-host job); "
                        "training's make_train_iterator.lanes must divide it.")


def _settings(args: argparse.Namespace):
    from codemix.data import beam_prepare

    settings = beam_prepare.settings_for(args.beam_runner, args.beam_options)
    extra = {k: str(v) for k, v in (("direct_num_workers", args.direct_num_workers),
                                    ("direct_running_mode", args.direct_running_mode)) if v is not None}
    return dataclasses.replace(settings, options={**extra, **dict(settings.options)})


def cache_mixture(mixture: str, root: str, settings, overwrite: bool = False, num_shards: int | None = None,
                  unit_documents: int | None = None) -> dict[str, str]:
    """Cache every family task of `mixture` under `root` with the run's
    vocabulary (pipeline.data_vocabulary) and corpus options (gin-bound
    CorpusOptions), `num_shards` shards per split and `unit_documents` raw
    documents per Beam work item (cache.py defaults when None);
    {task: "cached" | "up to date"}."""
    from codemix.data import cache, corpus, pipeline

    names, _ = pipeline.resolve_schedule(mixture)
    other = [n for n in names if n not in cache.TASKS]
    if other:
        raise DataError(f"{mixture!r} reads tasks {other} that are not family tasks; only the family "
                        f"tasks {sorted(cache.TASKS)} have a tokenized cache.")
    vocab_file = pipeline.data_vocabulary(mixture).sentencepiece_model_file
    sizes = {k: v for k, v in (("num_shards", num_shards), ("unit_documents", unit_documents)) if v is not None}
    return cache.build(names, root, vocab_file, corpus.CorpusOptions(), settings, overwrite=overwrite, **sizes)


def cache(args: argparse.Namespace) -> dict[str, str]:
    return cache_mixture(args.mixture, args.output, _settings(args), overwrite=args.overwrite,
                         num_shards=args.num_shards)


def options_with_raw_paths(raw_path: list[str]):
    from codemix.data import corpus

    options = corpus.CorpusOptions()
    raw = dict(options.raw_paths)
    for item in raw_path:
        family, sep, path = item.partition("=")
        if not sep or family not in corpus.FAMILIES or not path:
            raise DataError(f"--raw_path {item!r} is not FAMILY=PATH with FAMILY one of {list(corpus.FAMILIES)}.")
        raw[family] = path
    return dataclasses.replace(options, raw_paths=raw)


def prepare(args: argparse.Namespace, argv: list[str] | None = None) -> dict | str:
    """Stats per family (dict), or the dry run's text (str)."""
    from codemix.data import corpora, corpus

    options = options_with_raw_paths(args.raw_path)
    families = args.family or list(corpus.FAMILIES)
    if not args.beam_runner:
        if args.dry_run:
            raise DataError("--dry_run describes a Beam run; add --beam_runner (e.g. DataflowRunner).")
        return {f: corpora.stats(f, options) for f in families}
    from codemix.data import beam_prepare

    settings = _settings(args)
    if args.dry_run:
        argv = list(sys.argv[1:] if argv is None else argv)
        return "\n\n".join(beam_prepare.dry_run(f, options, settings, ["codemix", *argv]) for f in families)
    out = {}
    for f in families:
        if options.config_for(f) == "full":
            out[f] = dict(beam_prepare.prepare(f, options, settings).info.metadata["stats"])
        else:
            out[f] = corpora.stats(f, options)  # local configs stay in-process
    return out
