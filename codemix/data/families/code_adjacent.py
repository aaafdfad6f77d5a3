"""code_adjacent: text about code: commits, notebooks, Q&A threads.

local: the declared sources (codemix/data/local_sources.py): the Jupyter
       notebooks of pinned holoviews (~300), and the changelogs
       (commit-like entries) of Debian's required packages
       (/usr/share/doc/<package>/changelog*.gz) where present; one that is
       absent is counted as `source_missing:debian:<package>` and named in the
       stats' warnings.
full:  a folder with any of these subfolders (each optional, at least one):
         commits/*.jsonl[.gz|.zst]       fields `message`, `diff`
         notebooks/**/*.ipynb
         stackexchange/*.jsonl[.gz|.zst] SlimPajama records; only RedPajamaStackExchange kept
"""
from __future__ import annotations

import collections
import gzip
import json
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
from codemix.data.families.text import slimpajama_documents

MAX_CHANGELOG_CHARS = 20_000  # first entries only: a few packages have MB-long logs


def notebook_to_text(raw: str, where: str) -> str:
    """Cells in order, as a percent-format script: markdown as comments-free text
    after a `# %% [markdown]` marker, code after `# %%`. Outputs are dropped."""
    try:
        nb = json.loads(raw)
    except ValueError as e:
        raise readers.DataError(f"{where}: not a JSON notebook ({e}); fix or remove the file.") from e
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if cells is None:  # nbformat 3 keeps cells in worksheets
        cells = [c for ws in (nb.get("worksheets") or []) for c in ws.get("cells", [])] if isinstance(nb, dict) else []
    parts = []
    for cell in cells:
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else str(src)
        if not src.strip():
            continue
        kind = cell.get("cell_type", "code")
        parts.append(("# %% [markdown]\n" if kind != "code" else "# %%\n") + src.rstrip() + "\n")
    return "\n".join(parts)


def local_notebooks(resolved: local_sources.Resolved, counts: collections.Counter) -> list[Doc]:
    """The declared Python sources' notebooks, in hash order of their path."""
    found = {rel: src for src in resolved.of_kind("python") for rel in src.files if rel.endswith(".ipynb")}
    out = []
    for rel in local_sources.hash_ordered(found):
        src = found[rel]
        raw = local_sources.read_small_text(src.path(rel), counts)
        if raw is None:
            continue
        try:
            text = notebook_to_text(raw, rel)
        except readers.DataError:
            counts["malformed_notebook"] += 1
            continue
        out.append(Doc(text, "code_adjacent", src.label, rel, "jupyter"))
    if not out:
        counts["source_missing:notebooks"] += 1
    return out


def debian_changelogs(resolved: local_sources.Resolved, counts: collections.Counter) -> list[Doc]:
    """The first entries of the declared Debian packages' changelogs (those present)."""
    found = {rel: src for src in resolved.of_kind("debian") for rel in src.files}
    for src in resolved.sources:
        if src.kind == "debian" and not src.version:
            counts[f"source_missing:{src.name}"] += 1
    out = []
    for rel in local_sources.hash_ordered(found):
        src = found[rel]
        path = src.path(rel)
        try:
            with gzip.open(path, "rb") as f:
                text = f.read(MAX_CHANGELOG_CHARS * 2).decode("utf-8")
        except (OSError, EOFError):
            counts["unreadable"] += 1
            continue
        except UnicodeDecodeError:
            counts["invalid_utf8"] += 1
            continue
        if len(text) > MAX_CHANGELOG_CHARS:
            text = text[: text.rfind("\n\n", 0, MAX_CHANGELOG_CHARS) + 1] or text[:MAX_CHANGELOG_CHARS]
        if not text.strip():
            counts["empty"] += 1
            continue
        out.append(Doc(text, "code_adjacent", src.label, path, "changelog"))
    if not out:
        counts["source_missing:debian_changelogs"] += 1
    return out


def commit_documents(pattern: str, counts: collections.Counter, max_bad_lines: int,
                     max_bad_files: int = 0) -> Iterator[Doc]:
    for path, line, rec in readers.read_jsonl(pattern, ("message", "diff"), counts, max_bad_lines, max_bad_files):
        yield Doc(f"{rec['message'].rstrip()}\n\n{rec['diff']}", "code_adjacent", path, f"{path}:{line}", "commit")


@register_builder
class CodemixCodeAdjacent(CorpusBuilder):
    """Commits, notebooks and StackExchange threads."""

    FAMILY = "code_adjacent"
    RULES = ("invalid_utf8",)

    def local_documents(self, options: CorpusOptions, counts: collections.Counter) -> Iterator[Doc]:
        resolved = local_sources.resolve(self.FAMILY)
        return local_sources.round_robin(
            {"a_notebooks": local_notebooks(resolved, counts), "b_changelogs": debian_changelogs(resolved, counts)}
        )

    def full_shards(self, path: str, options: CorpusOptions, counts: collections.Counter) -> list[Shard]:
        root = path.rstrip("/")
        found = [d for d in ("commits", "notebooks", "stackexchange") if tf.io.gfile.isdir(f"{root}/{d}")]
        if not found:
            raise readers.DataError(
                f"{root}: code_adjacent needs at least one of the subfolders commits/, notebooks/, "
                f"stackexchange/ (see codemix/data/families/code_adjacent.py)."
            )
        for missing in {"commits", "notebooks", "stackexchange"} - set(found):
            counts[f"source_missing:{missing}"] += 1
        shards = []
        if "commits" in found:
            shards += [Shard("commits", f) for f in readers.expand_glob(f"{root}/commits/*.jsonl*")]
        if "notebooks" in found:
            notebooks = sorted(
                f"{d}/{f}" for d, _, files in tf.io.gfile.walk(f"{root}/notebooks") for f in files
                if f.endswith(".ipynb")
            )
            if not notebooks:
                counts["source_missing:notebooks"] += 1
            shards += [Shard("notebook", nb) for nb in notebooks]
        if "stackexchange" in found:
            shards += [Shard("stackexchange", f) for f in readers.expand_glob(f"{root}/stackexchange/*.jsonl*")]
        return shards

    @classmethod
    def shard_documents(cls, shard: Shard, options: CorpusOptions, counts: collections.Counter,
                        max_bad_lines: float, max_bad_files: float) -> Iterator[Doc]:
        if shard.kind == "commits":
            return commit_documents(shard.file, counts, max_bad_lines, max_bad_files)
        if shard.kind == "notebook":
            text = notebook_to_text(readers.read_text_file(shard.file), shard.file)
            return iter([Doc(text, cls.FAMILY, shard.file, shard.file, "jupyter")])
        return slimpajama_documents(shard.file, counts, max_bad_lines, keep_sets=("RedPajamaStackExchange",),
                                    family=cls.FAMILY, max_bad_files=max_bad_files)
