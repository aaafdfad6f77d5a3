"""A cheap detector for documents that are mostly code, used to keep code out
of the `text` family (the study removes code from its natural-language data).

How it decides: each non-blank line is scored as code-like when it matches a
signal that prose rarely has: a line ending in `;`, `{`, `}` or `):`, a line
opening with a programming keyword followed by code punctuation (`def f(`,
`import x`, `#include`, `return x;`), an assignment or call without spaces
between words, or a high share of the characters `{}[]();=<>_$\\`. Indentation
by four or more spaces or a tab counts as half a signal. A document is "mostly
code" when the code-like lines hold more than `threshold` (default 0.5) of its
non-blank characters. Lines are weighted by length so a few short code
snippets inside an article do not drop it.
"""
from __future__ import annotations

import re

_KEYWORD = re.compile(
    r"^\s*(def |class \w+[(:]|import \w|from \w[\w.]* import |#include|#define |return\b.*;|"
    r"function\b|var |let |const |public |private |static |package |using |fn |func |"
    r"if\s*\(|for\s*\(|while\s*\(|else\s*\{|}\s*else|try\s*[:{]|except\b.*:|@\w+)"
)
_ENDING = re.compile(r"(;|\{|\}|\)\s*:|=>|\]\s*,?|\(|,\s*\)|\)\))\s*$")
_PY_BLOCK = re.compile(
    r"^\s*(if|elif|else|for|while|with|return|raise|yield|assert|del|pass|break|continue|"
    r"global|nonlocal|lambda|try|except|finally|async|await|self\.)\b.*([():=\[\]]|\bpass$)"
)
_ASSIGN_OR_CALL = re.compile(r"^\s*[\w.\[\]'\"]+\s*(=|\+=|-=|==|\()\s*[^\s]")
_SYMBOLS = set("{}[]();=<>_$\\|&*#")


def code_line_score(line: str) -> float:
    """1.0 for a line that looks like code, 0.5 for code-ish indentation, else 0."""
    stripped = line.strip()
    if not stripped:
        return 0.0
    if _KEYWORD.match(line) or _ENDING.search(stripped) or _PY_BLOCK.match(line):
        return 1.0
    symbols = sum(c in _SYMBOLS for c in stripped) / len(stripped)
    if symbols > 0.15:
        return 1.0
    words = stripped.split()
    if _ASSIGN_OR_CALL.match(line) and len(words) <= 6:
        return 1.0
    if line.startswith(("    ", "\t")) and symbols > 0.03:
        return 0.5
    return 0.0


def code_fraction(text: str) -> float:
    """Share of non-blank characters that sit on code-like lines (0..1)."""
    total = 0.0
    code = 0.0
    for line in text.splitlines():
        n = len(line.strip())
        if not n:
            continue
        total += n
        code += n * code_line_score(line)
    return code / total if total else 0.0


def is_mostly_code(text: str, threshold: float = 0.5) -> bool:
    """True when more than `threshold` of the document's characters are code-like."""
    return code_fraction(text) > threshold
