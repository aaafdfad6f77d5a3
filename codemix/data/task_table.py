"""The family tasks training can mix: name -> family and an optional source filter.

A pure table (no SeqIO, no TensorFlow), so mixture specs and vocabulary
training can read it without registering anything; codemix/data/tasks.py
registers one SeqIO Task per entry.

Task names are the family names (text, code_web, markup, code_adjacent,
code_synthetic) plus `text_hq`, the high-quality part of text used by the
cooldown mixtures: encyclopedic, book and paper text (the gensim Wikipedia
sample locally; SlimPajama's Wikipedia, Book and ArXiv sets in full runs).
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TaskDef:
    family: str
    source_regex: str | None = None  # keep documents whose provenance matches
    description: str = ""


TASKS: dict[str, TaskDef] = {
    "text": TaskDef("text", None, "natural-language text, code removed"),
    "text_hq": TaskDef("text", r"(gensim==.*|slimpajama:RedPajama(Wikipedia|Book|ArXiv))",
                       "encyclopedic, book and paper text"),
    "code_web": TaskDef("code_web", None, "web code, 25 languages"),
    "markup": TaskDef("markup", None, "Markdown, reStructuredText, HTML, CSS"),
    "code_adjacent": TaskDef("code_adjacent", None, "commits, notebooks, Q&A"),
    "code_synthetic": TaskDef("code_synthetic", None, "verified synthetic Python problems"),
}
