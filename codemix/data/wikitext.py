"""Plain text from MediaWiki XML dumps: markup stripped, redirects dropped.

A small, dependency-free stripper (good enough for a training corpus, not a
full wikitext parser): it removes comments, <ref> notes, tables, templates
({{...}}, nested), files/categories/interlanguage links, keeps the visible
text of [[links|text]] and [url text] links, and drops bold/italic quotes and
heading markers. Pages in non-article namespaces (title contains ':') and
redirects are skipped and counted by the caller.
"""
from __future__ import annotations

import bz2
import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import IO

_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", re.DOTALL | re.IGNORECASE)
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_FILE_LINK = re.compile(r"\[\[(?:File|Image|Category|[a-z]{2,3}(?:-[a-z]+)?):[^\[\]]*(?:\[\[[^\]]*\]\][^\[\]]*)*\]\]", re.IGNORECASE)
_LINK = re.compile(r"\[\[(?:[^|\]]*\|)?([^\]]*)\]\]")
_EXT_LINK = re.compile(r"\[(?:https?|ftp)://[^\s\]]+\s*([^\]]*)\]")
_QUOTES = re.compile(r"'{2,5}")
_HEADING = re.compile(r"^=+\s*(.*?)\s*=+\s*$", re.MULTILINE)
_LIST = re.compile(r"^[*#:;]+\s*", re.MULTILINE)
_BLANKS = re.compile(r"\n{3,}")


def _drop_nested(text: str, open_: str, close: str) -> str:
    """Remove balanced open_...close spans (templates, tables), nesting allowed."""
    marks = re.compile(re.escape(open_) + "|" + re.escape(close))
    out, depth, last = [], 0, 0
    for m in marks.finditer(text):
        if m.group() == open_:
            if depth == 0:
                out.append(text[last : m.start()])
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                last = m.end()
    if depth == 0:
        out.append(text[last:])
    return "".join(out)


def strip_markup(wikitext: str) -> str:
    """Visible article text from wikitext."""
    t = _COMMENT.sub("", wikitext)
    t = _REF.sub("", t)
    t = _drop_nested(t, "{{", "}}")
    t = _drop_nested(t, "{|", "|}")
    t = _FILE_LINK.sub("", t)
    t = _LINK.sub(r"\1", t)
    t = _EXT_LINK.sub(r"\1", t)
    t = _TAG.sub("", t)
    t = _QUOTES.sub("", t)
    t = _HEADING.sub(r"\1", t)
    t = _LIST.sub("", t)
    t = html.unescape(t)
    lines = [line.rstrip() for line in t.splitlines()]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip() + "\n"


def iter_pages(stream: IO[bytes]) -> Iterator[tuple[str, str, bool]]:
    """(title, wikitext, is_redirect) for every page of a MediaWiki XML dump."""
    title, text, redirect = "", "", False
    for event, elem in ET.iterparse(stream, events=("end",)):
        tag = elem.tag.rsplit("}", 1)[-1]
        if tag == "title":
            title = elem.text or ""
        elif tag == "redirect":
            redirect = True
        elif tag == "text":
            text = elem.text or ""
        elif tag == "page":
            yield title, text, redirect or text.lstrip().upper().startswith("#REDIRECT")
            title, text, redirect = "", "", False
            elem.clear()


def iter_bz2_pages(path: str) -> Iterator[tuple[str, str, bool]]:
    with bz2.open(path, "rb") as f:
        yield from iter_pages(f)
