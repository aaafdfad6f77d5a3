"""Where an experiment's wall time went: the runs' phases (run_info.json,
written by codemix/train/phases.py) as tables, for the end of
`codemix experiment run` and for the report.

- `run_phases(root)`: one row per run -- wall seconds, seconds per phase,
  compile-cache hits and misses;
- `phase_totals(frame)`: one row per phase summed over the runs, with its
  share of the summed wall time;
- `productive_share(frame)`: the share of wall time in train steps and
  evaluation (held-out and benchmarks), the number the speed target is on.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from etils.epath import Path

from codemix.train import phases as run_phases_lib

PRODUCTIVE = ("train_steps", "heldout_eval", "benchmark_eval")


def run_phases(root: str | Path, runs: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of the runs under `root`/runs (all, or `runs`) that recorded phases."""
    base = Path(root) / "runs"
    names = list(runs) if runs is not None else sorted(p.name for p in base.iterdir()) if base.exists() else []
    rows = []
    for name in names:
        info = run_phases_lib.read(str(base / name))
        if info is None:
            continue
        cache = info.get("compile_cache", {})
        rows.append({"run": name, "wall_seconds": float(info["wall_seconds"]),
                     **{p: float(info["phases"].get(p, 0.0)) for p in run_phases_lib.PHASES},
                     "cache_hits": int(cache.get("hits", 0)), "cache_misses": int(cache.get("misses", 0))})
    cols = ["run", "wall_seconds", *run_phases_lib.PHASES, "cache_hits", "cache_misses"]
    return pd.DataFrame(rows, columns=cols)


def phase_totals(frame: pd.DataFrame) -> pd.DataFrame:
    """Seconds per phase summed over runs and their share (%) of the summed wall time."""
    wall = float(frame["wall_seconds"].sum()) if len(frame) else 0.0
    seconds = [float(frame[p].sum()) for p in run_phases_lib.PHASES]
    share = [100.0 * s / wall if wall > 0 else 0.0 for s in seconds]
    return pd.DataFrame({"phase": list(run_phases_lib.PHASES), "seconds": seconds, "% of wall": share})


def productive_share(frame: pd.DataFrame) -> float:
    """Fraction of the summed wall time spent in train steps and evaluation."""
    wall = float(frame["wall_seconds"].sum()) if len(frame) else 0.0
    return float(sum(frame[p].sum() for p in PRODUCTIVE) / wall) if wall > 0 else 0.0


def per_run_compile(frame: pd.DataFrame) -> pd.DataFrame:
    """Per run: wall and compile seconds, cache hits and misses, productive share (%)."""
    out = frame[["run", "wall_seconds", "compile", "cache_hits", "cache_misses"]].copy()
    out["% steps+eval"] = 100.0 * frame[list(PRODUCTIVE)].sum(axis=1) / frame["wall_seconds"].where(
        frame["wall_seconds"] > 0)
    return out


def describe(frame: pd.DataFrame) -> str:
    """One sentence: runs, wall seconds, productive share, cache hits/misses."""
    if not len(frame):
        return "no run recorded its phases"
    return (f"{len(frame)} runs, {frame['wall_seconds'].sum():.0f} s of wall time, "
            f"{100 * productive_share(frame):.1f}% in train steps and evaluation; compile cache "
            f"{int(frame['cache_hits'].sum())} hits, {int(frame['cache_misses'].sum())} misses, "
            f"{frame['compile'].sum():.1f} s compiling")


def markdown(root: str | Path) -> str:
    """The report's section body: totals per phase, then compile per run."""
    frame = run_phases(root)
    if not len(frame):
        return "No run recorded its phases (run_info.json without 'phases')."
    return "\n\n".join([
        describe(frame) + ".",
        phase_totals(frame).to_markdown(index=False, floatfmt=".1f"),
        per_run_compile(frame).to_markdown(index=False, floatfmt=".1f"),
    ])
