"""markup: Markdown, reStructuredText, HTML and CSS.

local: .md .rst .html .css files of the declared sources (the stdlib and
       pinned packages, codemix/data/local_sources.py), plus the pinned
       packages' long descriptions in `*.dist-info/METADATA` (the README that
       PyPI shows).
full:  The Stack's markdown, css and html folders (Parquet, field `content`).
"""
from __future__ import annotations

import collections
import email.parser
from collections.abc import Iterator

from codemix.data import local_sources
from codemix.data.corpus import (
    CorpusBuilder,
    CorpusOptions,
    Doc,
    Shard,
    register_builder,
)
from codemix.data.families.code_web import (
    local_files,
    read_local,
    stack_file_documents,
    stack_shards,
)
from codemix.data.languages import MARKUP_LANGUAGES, STACK_MARKUP_FOLDERS


def metadata_descriptions(resolved: local_sources.Resolved, counts: collections.Counter) -> list[Doc]:
    """Long descriptions of the declared distributions, language from their content type."""
    out = []
    for src in resolved.of_kind("python"):
        if not src.metadata_file:
            continue
        text = local_sources.read_small_text(src.path(src.metadata_file), counts)
        if not text:
            continue
        msg = email.parser.Parser().parsestr(text)
        body = msg.get_payload() or msg.get("Description") or ""
        if not isinstance(body, str) or len(body.strip()) < 100:
            counts["metadata_without_description"] += 1
            continue
        ctype = (msg.get("Description-Content-Type") or "").lower()
        lang = "markdown" if "markdown" in ctype else "html" if "html" in ctype else "restructuredtext"
        out.append(Doc(body, "markup", src.label, src.metadata_file, lang))
    return sorted(out, key=lambda d: (local_sources.stable_key(d.path), d.path))


@register_builder
class CodemixMarkup(CorpusBuilder):
    """Markup languages."""

    FAMILY = "markup"
    RULES = ("too_large", "invalid_utf8")

    def local_documents(self, options: CorpusOptions, counts: collections.Counter) -> Iterator[Doc]:
        resolved = local_sources.resolve(self.FAMILY)
        files = read_local(local_files(MARKUP_LANGUAGES, resolved), self.FAMILY, counts)
        return local_sources.round_robin({"a_files": list(files),
                                          "b_metadata": metadata_descriptions(resolved, counts)})

    def full_shards(self, path: str, options: CorpusOptions, counts: collections.Counter) -> list[Shard]:
        return stack_shards(path, STACK_MARKUP_FOLDERS, counts)

    @classmethod
    def shard_documents(cls, shard: Shard, options: CorpusOptions, counts: collections.Counter,
                        max_bad_lines: float, max_bad_files: float) -> Iterator[Doc]:
        return stack_file_documents(shard, cls.FAMILY, counts)
