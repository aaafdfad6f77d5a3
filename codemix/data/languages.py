"""The programming and markup languages of the study, in one table.

`CODE_LANGUAGES`: the 25 The Stack languages used for the code_web family
(folder name in The Stack -> file extensions used to tag local files, as The
Stack tags files by extension). `MARKUP_LANGUAGES`: the markup family.
"""
from __future__ import annotations

import os

CODE_LANGUAGES: dict[str, tuple[str, ...]] = {
    "python": (".py", ".pyx", ".pxd", ".pyi"),
    "java": (".java",),
    "javascript": (".js", ".mjs", ".cjs"),
    "typescript": (".ts", ".tsx"),
    "c": (".c", ".h"),
    "c++": (".cc", ".cpp", ".cxx", ".hpp", ".hh", ".cu", ".cuh"),
    "c-sharp": (".cs",),
    "go": (".go",),
    "rust": (".rs",),
    "ruby": (".rb",),
    "php": (".php",),
    "scala": (".scala",),
    "kotlin": (".kt", ".kts"),
    "swift": (".swift",),
    "shell": (".sh", ".bash"),
    "sql": (".sql",),
    "lua": (".lua",),
    "r": (".r",),
    "julia": (".jl",),
    "perl": (".pl", ".pm"),
    "haskell": (".hs",),
    "fortran": (".f", ".f90", ".f95"),
    "tex": (".tex",),
    "powershell": (".ps1",),
    "dart": (".dart",),
}
MARKUP_LANGUAGES: dict[str, tuple[str, ...]] = {
    "markdown": (".md", ".markdown"),
    "restructuredtext": (".rst",),
    "html": (".html", ".htm"),
    "css": (".css",),
}
# The Stack has no reStructuredText folder; the full markup config reads these.
STACK_MARKUP_FOLDERS = ("markdown", "css", "html")

assert len(CODE_LANGUAGES) == 25


def language_of(path: str, table: dict[str, tuple[str, ...]]) -> str | None:
    """Language of a file from its extension, or None when not in `table`."""
    ext = os.path.splitext(path)[1].lower()
    for lang, exts in table.items():
        if ext in exts:
            return lang
    return None


def extensions(table: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(e for exts in table.values() for e in exts)
