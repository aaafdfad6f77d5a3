"""JAX's persistent compilation cache, one per machine.

Every `codemix train`, `codemix experiment run` and evaluation compiles the
same step, held-out and scoring programs for the same shapes; with the cache
the second process reads them from disk instead of compiling again. The
directory is, first match wins:

  1. `compilation_cache.directory` bound in gin (e.g. on a shared filesystem);
  2. the environment variable CODEMIX_COMPILATION_CACHE;
  3. `$XDG_CACHE_HOME/codemix/jax` (default `~/.cache/codemix/jax`).

The value "off" (in gin or the variable) disables the cache. Programs that
compile in under `min_compile_seconds` are not stored (they are cheaper to
compile than to read). Hits and misses of a run are in its run_info.json
("compile_cache", see phases.py).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import gin

ENV = "CODEMIX_COMPILATION_CACHE"
log = logging.getLogger(__name__)


def default_directory() -> Path:
    """`$XDG_CACHE_HOME/codemix/jax`, or `~/.cache/codemix/jax` when XDG_CACHE_HOME is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "codemix" / "jax"


def resolve(directory: str | None = None) -> Path | None:
    """The cache directory to use (None = disabled), by the rules of the module docstring."""
    value = directory if directory is not None else os.environ.get(ENV)
    if value is not None and value.strip().lower() == "off":
        return None
    return Path(os.path.expanduser(value)) if value else default_directory()


@gin.configurable
def compilation_cache(directory: str | None = None, min_compile_seconds: float = 0.5) -> Path | None:
    """Point JAX's persistent compilation cache at this machine's directory.

    Args:
      directory: cache directory; None = $CODEMIX_COMPILATION_CACHE, else
        $XDG_CACHE_HOME/codemix/jax (~/.cache/codemix/jax); "off" disables it.
      min_compile_seconds: programs that compile faster (seconds) are not stored.
    Returns the directory in use, or None when disabled.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    path = resolve(directory)
    current = jax.config.jax_compilation_cache_dir
    wanted = str(path) if path is not None else None
    if current == wanted:
        return path
    if path is not None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"compilation cache directory {path} can't be created ({e}); set "
                          f"{ENV} (or gin compilation_cache.directory) to a writable directory, "
                          f"or to 'off'.") from e
    jax.config.update("jax_compilation_cache_dir", wanted)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    cc.reset_cache()  # JAX reads the directory at its first compile; make it read it again
    log.info("compilation cache: %s", wanted or "off")
    return path
