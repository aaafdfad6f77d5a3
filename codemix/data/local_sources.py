"""Files that installed packages ship, for the embedded `local` corpora.

Provenance: a file under site-packages is attributed to the distribution that
owns its top-level directory (`importlib.metadata.packages_distributions`),
as "name==version"; a stdlib file to "python-stdlib==3.11.7". Sampling is
deterministic: candidates are ordered by a hash of their relative path (so a
capped corpus is a spread over many packages, not the alphabetically first
ones) and interleaved round-robin over languages.
"""
from __future__ import annotations

import collections
import functools
import hashlib
import importlib.metadata
import importlib.util
import itertools
import logging
import os
import platform
import sysconfig
from collections.abc import Iterable, Iterator, Mapping

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 200_000  # larger files are mostly generated or minified



def site_packages() -> str:
    return sysconfig.get_paths()["purelib"]


def stdlib() -> str:
    return sysconfig.get_paths()["stdlib"]


def stdlib_source() -> str:
    return f"python-stdlib=={platform.python_version()}"


@functools.lru_cache(maxsize=1)
def _top_level_owners() -> dict[str, str]:
    owners: dict[str, str] = {}
    for top, dists in importlib.metadata.packages_distributions().items():
        name = dists[0]
        try:
            owners[top] = f"{name}=={importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            owners[top] = name
    return owners


def owner_of(relpath: str) -> str:
    """The distribution ("name==version") that ships a site-packages file."""
    top = relpath.split(os.sep, 1)[0]
    if top.endswith(".dist-info"):
        name, _, version = top[: -len(".dist-info")].partition("-")
        return f"{name}=={version}"
    module = top.removesuffix(".py")
    return _top_level_owners().get(module, module)


def package_dir(name: str) -> str | None:
    """A top-level package's folder without importing it (None if not installed)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(iter(spec.submodule_search_locations))


def stable_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def walk_files(root: str, extensions: Iterable[str], skip_dirs: Iterable[str] = ()) -> list[str]:
    """Relative paths under root whose name ends with one of `extensions` (lower-cased)."""
    exts = tuple(e.lower() for e in extensions)
    skip = set(skip_dirs)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip and d != "__pycache__")
        for f in filenames:
            if f.lower().endswith(exts):
                out.append(os.path.relpath(os.path.join(dirpath, f), root))
    return out


def read_small_text(path: str, counts: collections.Counter) -> str | None:
    """File text, or None (counted) when too large, unreadable or not UTF-8."""
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            counts["too_large"] += 1
            return None
        if size == 0:
            counts["empty"] += 1
            return None
        with open(path, "rb") as f:
            return f.read().decode("utf-8")
    except UnicodeDecodeError:
        counts["invalid_utf8"] += 1
    except OSError:
        counts["unreadable"] += 1
    return None


def round_robin(groups: Mapping[str, list]) -> Iterator:
    """Items of each group in turn (groups in sorted order), until all run out."""
    iters = [iter(groups[k]) for k in sorted(groups)]
    for item in itertools.chain.from_iterable(itertools.zip_longest(*iters)):
        if item is not None:
            yield item


def hash_ordered(paths: Iterable[str]) -> list[str]:
    return sorted(paths, key=stable_key)
