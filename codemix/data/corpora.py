"""The five families' corpora: which builder, prepared once, stats, read as tf.data.

codemix/data/corpus.py defines what a corpus builder does (`CorpusBuilder`,
`CorpusOptions`); codemix/data/families/ subclasses it once per family. This
module sits above both: it imports the families (which register their
builders) and prepares and reads them, so neither of those imports the other
in a circle.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable

import tensorflow as tf
import tensorflow_datasets as tfds

import codemix.data.families  # noqa: F401  (registers the five builders)
from codemix.data import local_sources
from codemix.data.corpus import BUILDERS, FAMILIES, CorpusBuilder, CorpusOptions
from codemix.data.readers import DataError
from codemix.data.task_table import TASKS

log = logging.getLogger(__name__)

_LOCK = threading.Lock()


def builder_class(family: str) -> type[CorpusBuilder]:
    """The TFDS builder class of `family`."""
    if family not in BUILDERS:
        raise DataError(f"unknown data family {family!r}; families are {list(FAMILIES)}.")
    return BUILDERS[family]


def get_builder(family: str, options: CorpusOptions | None = None) -> CorpusBuilder:
    """The builder of `family` for these options (not prepared)."""
    options = options or CorpusOptions()
    unknown = sorted(set(dict(options.raw_paths)) - set(FAMILIES))
    if unknown:
        raise DataError(f"CorpusOptions.raw_paths names unknown families {unknown}; families are {list(FAMILIES)}.")
    cls = builder_class(family)
    data_dir = os.path.join(options.data_dir, options.fingerprint(family))
    return cls(config=options.config_for(family), data_dir=data_dir, options=options)


def prepare(family: str, options: CorpusOptions | None = None) -> CorpusBuilder:
    """Prepare `family` once (no-op when already prepared); returns the builder."""
    with _LOCK:
        builder = get_builder(family, options)
        if not tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json")):
            tfds.display_progress_bar(False)
            log.info("preparing corpus %s (%s) in %s", family, builder.builder_config.name, builder.data_dir)
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(verify_ssl=False, try_download_gcs=False)
            )
            builder = get_builder(family, options)
        return builder


def stats(family: str, options: CorpusOptions | None = None) -> dict:
    """The prepared corpus's stats (documents, bytes, drops by rule)."""
    builder = prepare(family, options)
    return dict(builder.info.metadata.get("stats", {}))


def text_dataset(
    family: str, split: str, shuffle_files: bool = False, seed: int | None = None,
    options: CorpusOptions | None = None,
) -> tf.data.Dataset:
    """{"text", "family", "source", "path", "language"} examples of a prepared family."""
    builder = prepare(family, options)
    if split not in builder.info.splits:
        raise DataError(f"family {family!r} has no split {split!r}; use one of {list(builder.info.splits)}.")
    read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False)
    return builder.as_dataset(split=split, shuffle_files=shuffle_files, read_config=read_config)


def provenance(names: Iterable[str], options: CorpusOptions | None = None) -> dict[str, dict]:
    """Which corpora the family tasks or families `names` read, for a run's record
    and its report: {family: {"config", "fingerprint", and for a local config
    "sources" (name, version, file count, manifest of each declared source) and
    "warnings" (optional sources left out); for a full config "raw" (its path)}}.

    Computed from these options and this environment, without preparing
    anything, so a run records it when it starts (`BatchIterator.corpora`).
    Names that are not family tasks (e.g. the byte-level `local_text`) read no
    corpus and have no entry."""
    options = options or CorpusOptions()
    out: dict[str, dict] = {}
    for name in names:
        family = TASKS[name].family if name in TASKS else name if name in FAMILIES else None
        if family is None or family in out:
            continue
        config = options.config_for(family)
        entry = {"config": config, "fingerprint": options.fingerprint(family)}
        if config == "local":
            entry.update(local_sources.provenance(family))
        else:
            entry["raw"] = dict(options.raw_paths)[family]
        out[family] = entry
    return out
