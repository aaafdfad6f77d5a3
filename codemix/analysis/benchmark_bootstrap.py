"""The older bootstrap API on benchmark-level scores shaped ``(seeds, benchmarks)``.

`bootstrap_relative_change` and `bootstrap_mean_interval` resample benchmarks and
seeds only, so they never see the sampling noise of examples; the paired,
per-example bootstrap of codemix/analysis/stats.py (`paired_change`,
`mean_interval`) does, and is what the analysis uses. These stay for callers of
the old API.
"""
from __future__ import annotations

import numpy as np

from codemix.analysis.stats import Change, percentiles, relative_change


def bootstrap_relative_change(
    variant: np.ndarray,
    baseline: np.ndarray,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Change:
    """Old API: relative change on benchmark-level scores, resampling benchmarks and seeds only.

    It cannot see the sampling noise of examples (use `paired_change` on
    per-example scores for that); kept for callers of the old API.

    Args:
      variant: scores shaped (seeds, benchmarks) (or (benchmarks,) for one seed).
      baseline: scores shaped (seeds, benchmarks), the same benchmarks in the
        same column order (seed counts may differ).
      resamples: bootstrap replicates.
      level: interval coverage (0.95 = the 2.5th to 97.5th percentile).
      seed: numpy seed of the resampling (fixed: reruns agree).
    """
    v = np.atleast_2d(np.asarray(variant, dtype=np.float64))
    b = np.atleast_2d(np.asarray(baseline, dtype=np.float64))
    if v.shape[1] != b.shape[1]:
        raise ValueError(f"variant has {v.shape[1]} benchmarks but the baseline has {b.shape[1]}; "
                         f"align them on the same benchmarks first.")
    if v.size == 0 or b.size == 0:
        return Change(float("nan"), float("nan"), float("nan"), v.shape[1], v.shape[0], b.shape[0])
    point = relative_change(float(np.mean(v)), float(np.mean(b)))
    rng = np.random.default_rng(seed)
    nb = v.shape[1]
    bench = rng.integers(0, nb, size=(resamples, nb))
    sv = rng.integers(0, v.shape[0], size=(resamples, v.shape[0]))
    sb = rng.integers(0, b.shape[0], size=(resamples, b.shape[0]))
    # Mean over the resampled seeds first (per benchmark), then over the
    # resampled benchmarks: equals the mean of the resampled (seed, benchmark) grid.
    v_seed = v[sv].mean(axis=1)  # (resamples, benchmarks)
    b_seed = b[sb].mean(axis=1)
    rows = np.arange(resamples)[:, None]
    mv = v_seed[rows, bench].mean(axis=1)
    mb = b_seed[rows, bench].mean(axis=1)
    ok = mb != 0
    lo, hi = percentiles(100.0 * (mv[ok] - mb[ok]) / mb[ok], level)
    return Change(point, lo, hi, nb, v.shape[0], b.shape[0], int((~ok).sum()), resamples=resamples)


def bootstrap_mean_interval(scores: np.ndarray, resamples: int = 2000, level: float = 0.95,
                            seed: int = 0) -> tuple[float, float, float]:
    """Old API: (mean, low, high) of scores shaped (seeds, benchmarks), resampling both axes."""
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if s.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    bench = rng.integers(0, s.shape[1], size=(resamples, s.shape[1]))
    seeds = rng.integers(0, s.shape[0], size=(resamples, s.shape[0]))
    per = s[seeds].mean(axis=1)
    reps = per[np.arange(resamples)[:, None], bench].mean(axis=1)
    lo, hi = percentiles(reps, level)
    return float(s.mean()), lo, hi
