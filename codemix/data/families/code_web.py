"""code_web: source code as found on the web, in the study's 25 languages.

local: source files of the declared sources (codemix/data/local_sources.py:
       the running interpreter's stdlib and pinned packages, never whatever
       else is installed), language from the file extension (as The Stack
       does), interleaved round-robin over languages so the capped sample is
       not all Python.
full:  The Stack as Parquet, one folder per language (`<root>/<language>/*.parquet`,
       field `content`); only the languages in codemix.data.languages.CODE_LANGUAGES.
"""
from __future__ import annotations

import collections
import logging
import os
from collections.abc import Iterator

import tensorflow as tf

from codemix.data import local_sources, readers
from codemix.data.corpus import (
    CorpusBuilder,
    CorpusOptions,
    Doc,
    Shard,
    register_builder,
)
from codemix.data.languages import CODE_LANGUAGES, extensions, language_of

log = logging.getLogger(__name__)


def local_files(table: dict[str, tuple[str, ...]], resolved: local_sources.Resolved
                ) -> dict[str, list[tuple[str, str, str]]]:
    """language -> [(absolute path, source, relative path)] of the declared Python
    sources' files in `table`'s languages, in hash order of the relative path."""
    exts = tuple(e.lower() for e in extensions(table))
    by_lang: dict[str, list[tuple[str, str, str]]] = collections.defaultdict(list)
    for src in resolved.of_kind("python"):
        for rel in src.files:
            if rel.lower().endswith(exts):
                by_lang[language_of(rel, table)].append((src.path(rel), src.label, rel))
    return {lang: sorted(items, key=lambda t: (local_sources.stable_key(t[2]), t[1]))
            for lang, items in by_lang.items()}


def read_local(groups: dict[str, list[tuple[str, str, str]]], family: str,
               counts: collections.Counter) -> Iterator[Doc]:
    lang_of = {id(item): lang for lang, items in groups.items() for item in items}
    for item in local_sources.round_robin(groups):
        path, source, rel = item
        text = local_sources.read_small_text(path, counts)
        if text is not None:
            yield Doc(text, family, source, rel, lang_of[id(item)])


def stack_documents(root: str, languages: tuple[str, ...], family: str,
                    counts: collections.Counter) -> Iterator[Doc]:
    """The Stack Parquet, file after file (`stack_shards`, `stack_file_documents`)."""
    for shard in stack_shards(root, languages, counts):
        yield from stack_file_documents(shard, family, counts)


def stack_file_documents(shard: Shard, family: str, counts: collections.Counter) -> Iterator[Doc]:
    """One Parquet file's rows with non-null `content`, as `shard.language`."""
    for path, row, rec in readers.read_parquet(shard.file, ("content",)):
        if rec["content"] is None:
            counts["null_content"] += 1
            continue
        yield Doc(rec["content"], family, path, f"{path}#{row}", shard.language)


def stack_shards(root: str, languages: tuple[str, ...], counts: collections.Counter) -> list[Shard]:
    """The Stack Parquet: `<root>/<language>/*.parquet` with a `content` column.

    Folder names match the languages case-insensitively (`Python/` is python);
    folders that are none of `languages` are skipped, counted and named in a
    warning together with the names that would have matched."""
    root = root.rstrip("/")
    present = sorted(os.path.basename(p.rstrip("/")) for p in tf.io.gfile.glob(root + "/*")
                     if tf.io.gfile.isdir(p))
    if not present:
        raise readers.DataError(
            f"{root}: no language folders; The Stack is read as <root>/<language>/*.parquet "
            f"(e.g. {root}/python/data-00000.parquet)."
        )
    by_name = {lang.lower(): lang for lang in languages}
    folder_of: dict[str, str] = {}
    unknown = []
    for folder in present:
        lang = by_name.get(folder.lower())
        if lang is None:
            unknown.append(folder)
            counts[f"language_not_in_study:{folder}"] += 1
        elif lang in folder_of:
            raise readers.DataError(f"{root}: folders {folder_of[lang]!r} and {folder!r} are both language "
                                    f"{lang!r}; merge them into one.")
        else:
            folder_of[lang] = folder
    if unknown:
        log.warning("%s: skipping folder(s) %s, which are not languages of the study here; known names "
                    "(any case): %s", root, unknown, sorted(languages))
    wanted = [lang for lang in languages if lang in folder_of]
    if not wanted:
        raise readers.DataError(f"{root}: none of the folders {present} is one of the languages {list(languages)}.")
    return [Shard("parquet", f, lang) for lang in wanted
            for f in readers.expand_glob(f"{root}/{folder_of[lang]}/*.parquet")]


@register_builder
class CodemixCodeWeb(CorpusBuilder):
    """Web code in the study's 25 languages."""

    FAMILY = "code_web"
    RULES = ("too_large", "invalid_utf8")

    def local_documents(self, options: CorpusOptions, counts: collections.Counter) -> Iterator[Doc]:
        return read_local(local_files(CODE_LANGUAGES, local_sources.resolve(self.FAMILY)), self.FAMILY, counts)

    def full_shards(self, path: str, options: CorpusOptions, counts: collections.Counter) -> list[Shard]:
        return stack_shards(path, tuple(CODE_LANGUAGES), counts)

    @classmethod
    def shard_documents(cls, shard: Shard, options: CorpusOptions, counts: collections.Counter,
                        max_bad_lines: float, max_bad_files: float) -> Iterator[Doc]:
        return stack_file_documents(shard, cls.FAMILY, counts)
