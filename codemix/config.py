"""Gin plumbing shared by every command: search paths, parsing, clear errors."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import gin

REPO_ROOT = Path(__file__).resolve().parent.parent
GIN_DIR = REPO_ROOT / "gin"


class ConfigError(Exception):
    """A user-fixable configuration problem (bad gin file, typo, missing macro)."""


def resolve_gin_file(name: str) -> str:
    """A gin file by path, or relative to the repo root or its gin/ folder."""
    for candidate in (Path(name), REPO_ROOT / name, GIN_DIR / name):
        if candidate.is_file():
            return str(candidate)
    raise ConfigError(
        f"gin file {name!r} not found (looked in the current directory, {REPO_ROOT} and {GIN_DIR}); "
        f"check the path, e.g. gin/experiments/tiny_cpu.gin."
    )


def parse(gin_files: Sequence[str], gin_params: Sequence[str] = (), finalize: bool = True) -> None:
    """Parse gin files then bindings; any gin error becomes one ConfigError."""
    import codemix.registry  # noqa: F401  (registers every configurable)

    for path in (str(REPO_ROOT), str(GIN_DIR), os.getcwd()):
        gin.add_config_file_search_path(path)
    files = [resolve_gin_file(f) for f in gin_files]
    try:
        gin.parse_config_files_and_bindings(files, list(gin_params), finalize_config=finalize)
    except Exception as e:  # gin raises ValueError/KeyError/ImportError/SyntaxError
        raise ConfigError(
            f"gin configuration error: {e}\n(files: {files}; params: {list(gin_params)}). "
            f"Check the spelling of the configurable and parameter names against the "
            f"@gin.configurable functions in codemix/."
        ) from e


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
