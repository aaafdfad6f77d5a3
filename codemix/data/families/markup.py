"""markup: Markdown, reStructuredText, HTML and CSS.

local: .md .rst .html .css files in site-packages, plus the long descriptions
       in `*.dist-info/METADATA` (the package README that PyPI shows).
full:  The Stack's markdown, css and html folders (Parquet, field `content`).
"""
from __future__ import annotations

import collections
import email.parser
import os
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


def metadata_descriptions(counts: collections.Counter) -> list[Doc]:
    """Long descriptions of installed distributions, language from their content type."""
    site = local_sources.site_packages()
    out = []
    for name in sorted(os.listdir(site)):
        if not name.endswith(".dist-info"):
            continue
        path = os.path.join(site, name, "METADATA")
        text = local_sources.read_small_text(path, counts) if os.path.exists(path) else None
        if not text:
            continue
        msg = email.parser.Parser().parsestr(text)
        body = msg.get_payload() or msg.get("Description") or ""
        if not isinstance(body, str) or len(body.strip()) < 100:
            counts["metadata_without_description"] += 1
            continue
        ctype = (msg.get("Description-Content-Type") or "").lower()
        lang = "markdown" if "markdown" in ctype else "html" if "html" in ctype else "restructuredtext"
        out.append(Doc(body, "markup", local_sources.owner_of(name), f"{name}/METADATA", lang))
    return sorted(out, key=lambda d: local_sources.stable_key(d.path))


@register_builder
class CodemixMarkup(CorpusBuilder):
    """Markup languages."""

    FAMILY = "markup"
    RULES = ("too_large", "invalid_utf8")

    def local_documents(self, options: CorpusOptions, counts: collections.Counter) -> Iterator[Doc]:
        groups = local_files(MARKUP_LANGUAGES, counts, include_stdlib=False)
        files = read_local(groups, self.FAMILY, counts)
        return local_sources.round_robin({"a_files": list(files), "b_metadata": metadata_descriptions(counts)})

    def full_shards(self, path: str, options: CorpusOptions, counts: collections.Counter) -> list[Shard]:
        return stack_shards(path, STACK_MARKUP_FOLDERS, counts)

    @classmethod
    def shard_documents(cls, shard: Shard, options: CorpusOptions, counts: collections.Counter,
                        max_bad_lines: float, max_bad_files: float) -> Iterator[Doc]:
        return stack_file_documents(shard, cls.FAMILY, counts)
