"""Where a run's wall time goes: exclusive phases, compile seconds, cache hits.

A `PhaseClock` charges every moment since it started to exactly one phase,
the innermost open `with clock.phase(name):` (time outside any is `other`),
so the phases always sum to the clock's wall time. Compilation is moved out
of the phase it happened in: JAX reports each top-level trace, lowering and
XLA compile (or persistent-cache read) through `jax.monitoring`, and those
seconds are charged to `compile` instead. The same listener counts the
persistent compilation cache's hits and misses.

Phases (seconds each, in `run_info.json` under "phases"):
  startup           gin parsing, mesh, model and optimizer state (fresh,
                    restored from this run's checkpoint, or a parent's weights)
  data_setup        the training iterator, its first batch, the held-out sets
  compile           tracing, lowering and compiling (or reading the cache)
  train_steps       the step loop: batches, dispatch, metrics lines
  checkpoint_write  Checkpointer.save (device-to-host copy, start of the write)
  checkpoint_wait   waiting for the last write to commit and be checksummed
  heldout_eval      in-loop held-out loss and bits per byte
  benchmark_eval    benchmarks after training (and in-loop eval hooks)
  other             the rest (metric files, lineage, ...)
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator

PHASES = ("startup", "data_setup", "compile", "train_steps", "checkpoint_write", "checkpoint_wait",
          "heldout_eval", "benchmark_eval", "other")

_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",  # includes a persistent-cache read
)
_HIT, _MISS = "/jax/compilation_cache/cache_hits", "/jax/compilation_cache/cache_misses"

_active: list[PhaseClock] = []  # the clocks that jax.monitoring events go to (innermost last)
_lock = threading.Lock()
_registered = False


def _on_duration(event: str, seconds: float, **_) -> None:
    if event in _COMPILE_EVENTS and _active:
        _active[-1]._moved_to_compile(float(seconds))


def _on_event(event: str, **_) -> None:
    if _active and event in (_HIT, _MISS):
        _active[-1].cache["hits" if event == _HIT else "misses"] += 1


def _register() -> None:
    global _registered
    with _lock:
        if _registered:
            return
        import jax

        jax.monitoring.register_event_duration_secs_listener(_on_duration)
        jax.monitoring.register_event_listener(_on_event)
        _registered = True


class PhaseClock:
    """Exclusive wall-time phases of one run (see the module docstring)."""

    def __init__(self):
        _register()
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = defaultdict(float)
        self.cache = {"hits": 0, "misses": 0}
        self._stack = ["other"]
        self._since = self.start
        self._thread = threading.get_ident()
        _active.append(self)

    def _charge(self) -> None:
        now = time.perf_counter()
        self.seconds[self._stack[-1]] += now - self._since
        self._since = now

    def _moved_to_compile(self, seconds: float) -> None:
        if threading.get_ident() != self._thread or self._stack[-1] == "compile":
            return  # a background thread's compile overlaps the main thread's phase
        self.seconds["compile"] += seconds
        self.seconds[self._stack[-1]] -= seconds

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Charge the time inside the block to `name` (one of PHASES)."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; phases are {PHASES}.")
        self._charge()
        self._stack.append(name)
        try:
            yield
        finally:
            self._charge()
            self._stack.pop()

    def compile_seconds(self) -> float:
        """Compilation seconds so far (the `compile` phase, moved-out compiles included)."""
        return float(self.seconds.get("compile", 0.0))

    def wall(self) -> float:
        return time.perf_counter() - self.start

    def snapshot(self) -> dict:
        """{"wall_seconds", "phases": {phase: seconds}, "compile_cache": {hits, misses}}."""
        self._charge()
        phases = {p: max(float(self.seconds.get(p, 0.0)), 0.0) for p in PHASES}
        return {"wall_seconds": self._since - self.start, "phases": phases, "compile_cache": dict(self.cache)}

    def close(self) -> None:
        """Stop receiving compile events (the clock's numbers stay readable)."""
        if self in _active:
            _active.remove(self)


def record(workdir: str, clock: PhaseClock) -> dict:
    """Write the clock's snapshot into `<workdir>/run_info.json` (process 0 only)."""
    snap = clock.snapshot()
    import jax

    from codemix import storage

    path = storage.path(workdir) / "run_info.json"
    if jax.process_index() != 0 or not path.exists():
        return snap
    info = json.loads(path.read_text())
    info.update(snap)
    storage.write_text(path, json.dumps(info, indent=2))
    return snap


def read(run_dir: str) -> dict | None:
    """A run's recorded phases (the run_info.json keys `record` writes), or None."""
    from codemix import storage

    path = storage.path(run_dir) / "run_info.json"
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    return info if "phases" in info else None


def total(infos: Iterable[dict]) -> dict:
    """Phases, wall seconds and cache counts summed over runs' `read` results."""
    out = {"runs": 0, "wall_seconds": 0.0, "phases": {p: 0.0 for p in PHASES},
           "compile_cache": {"hits": 0, "misses": 0}}
    for info in infos:
        out["runs"] += 1
        out["wall_seconds"] += float(info["wall_seconds"])
        for p, s in info["phases"].items():
            out["phases"][p] = out["phases"].get(p, 0.0) + float(s)
        for k in ("hits", "misses"):
            out["compile_cache"][k] += int(info.get("compile_cache", {}).get(k, 0))
    return out
