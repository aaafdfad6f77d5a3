"""Gin plumbing shared by every command: search paths, parsing, clear errors.

Where gin files are found. A name such as `gin/experiments/demo.gin`, given
to `--gin_file`, to `parse()` or in an `include` line, is looked up in order:

  1. as written: an absolute path, or relative to the current directory;
  2. in `SHIPPED_DIR`, the installed `codemix` package, which holds `gin/`
     (the repository's top-level gin/ folder: a symlink in a checkout,
     copied into a wheel as package data);
  3. in `GIN_DIR` itself, so `experiments/demo.gin` also works.

So every command works from any directory and from a non-editable install,
a user's own gin file can `include 'gin/models/tiny.gin'`, and a file of the
same name in the current directory takes precedence over the shipped one.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import gin
from codemix.errors import ConfigError

SHIPPED_DIR = Path(__file__).resolve().parent
GIN_DIR = SHIPPED_DIR / "gin"
SEARCH_PATH = (SHIPPED_DIR, GIN_DIR)  # after the current directory, which gin always tries first

_registered: set[str] = set()


def add_search_paths() -> None:
    """Put SEARCH_PATH on gin's include search path, and let gin read gs:// files
    (a run's operative_config.gin in a bucket) through epath (once per process)."""
    for path in map(str, SEARCH_PATH):
        if path not in _registered:
            gin.add_config_file_search_path(path)
            _registered.add(path)
    if "url reader" not in _registered:
        gin.config.register_file_reader(_open_url, _is_url_file)
        _registered.add("url reader")


def _is_url_file(name: str) -> bool:
    from codemix import storage

    return storage.is_url(name) and storage.path(name).is_file()


def _open_url(name: str):
    from codemix import storage

    return storage.path(name).open()


def resolve_gin_file(name: str) -> str:
    """The path of gin file `name`: as written, else in the shipped gin files."""
    if "://" in name:  # a file in a bucket (codemix/storage.py); pathlib would make gs://b into gs:/b
        from codemix import storage

        if storage.path(name).is_file():
            return name
        raise ConfigError(f"gin file {name} not found; check the path (and that the run wrote its config).")
    path = Path(name)
    candidates = [path] if path.is_absolute() else [path, *(d / path for d in SEARCH_PATH)]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise ConfigError(
        f"gin file {name!r} not found (looked in the current directory {Path.cwd()} and in the gin files "
        f"shipped with codemix, {GIN_DIR}); check the path, e.g. gin/runs/tiny_cpu.gin."
    )


def parse(gin_files: Sequence[str], gin_params: Sequence[str] = (), finalize: bool = True) -> None:
    """Parse gin files then bindings; any gin error becomes one ConfigError.

    Only configurables already imported can be named: the entry point (a
    command module, or a caller parsing a whole run's config) imports
    `codemix.registry` first, so this gin plumbing depends on nothing else
    in codemix."""
    add_search_paths()
    files = [resolve_gin_file(f) for f in gin_files]
    try:
        gin.parse_config_files_and_bindings(files, list(gin_params), finalize_config=False)
        check_required(files)
        if finalize:
            gin.finalize()
    except ConfigError:
        raise
    except Exception as e:  # gin raises ValueError/KeyError/ImportError/SyntaxError
        raise ConfigError(
            f"gin configuration error: {e}\n(files: {files}; params: {list(gin_params)}). "
            f"Check the spelling of the configurable and parameter names against the "
            f"@gin.configurable functions in codemix/."
        ) from e


_REQUIRED_LINE = re.compile(r"^(\S+) = %gin\.REQUIRED$", re.MULTILINE)


def check_required(files: Sequence[str] = ()) -> None:
    """One ConfigError naming every macro or binding still `%gin.REQUIRED`.

    gin itself checks this only in `gin.finalize()`, names one at a time, and
    a caller that parses with finalize=False would otherwise pass gin's
    REQUIRED sentinel on as a value.
    """
    missing = _REQUIRED_LINE.findall(gin.config_str())
    if missing:
        raise ConfigError(
            f"required gin setting{'s' if len(missing) > 1 else ''} not set: {', '.join(missing)} "
            f"(declared `= %gin.REQUIRED` by the gin files {files} or their includes; each file's "
            f"header says what to set). Set {'each' if len(missing) > 1 else 'it'} in your gin file "
            f"or on the command line, e.g. --gin_param \"{missing[0]} = ...\"."
        )


def query(name: str, default=None):
    """The bound value of `configurable.param`, with macros (%NAME) resolved."""
    try:
        value = gin.query_parameter(name)
        for _ in range(16):  # a macro may name another macro
            selector = getattr(value, "scoped_selector", "")
            if not (isinstance(value, gin.config.ConfigurableReference) and selector.endswith("gin.macro")):
                break
            value = gin.query_parameter(selector + ".value")
        return value
    except (ValueError, KeyError):
        return default
