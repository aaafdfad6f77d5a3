"""Relative change against a baseline, with bootstrap 95% intervals.

A category's score is the mean, over its benchmarks, of each benchmark's
primary metric (averaged over seeds when a variant has several). The relative
change of variant V against baseline B in that category is

    100 * (score(V) - score(B)) / score(B)      [percent]

Its interval is a percentile bootstrap that treats benchmarks (and seeds) as
the sampled units:

  * each replicate draws the category's benchmarks with replacement, and the
    SAME draw is used for V and B (the comparison is paired by benchmark, so
    a benchmark that is hard for both does not widen the interval);
  * when V or B has several seeds, each replicate also draws that variant's
    seeds with replacement, independently for V and B (seeds are not paired);
  * the replicate's relative change is computed from the resampled means,
    and the interval is the 2.5th and 97.5th percentile over replicates.

With one benchmark and one seed the interval collapses to the point estimate:
there is nothing to resample. Replicates whose baseline mean is 0 are
undefined and left out (their count is returned).
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Change:
    """A relative change in percent with its bootstrap interval."""

    value: float
    low: float
    high: float
    n_benchmarks: int
    n_seeds: int  # of the variant (the baseline's are in base_seeds)
    base_seeds: int
    undefined: int = 0  # replicates dropped because the baseline mean was 0


def relative_change(variant: float, baseline: float) -> float:
    """100 * (variant - baseline) / baseline; NaN when the baseline is 0."""
    if baseline == 0 or not np.isfinite(baseline):
        return float("nan")
    return 100.0 * (variant - baseline) / baseline


def bootstrap_relative_change(
    variant: np.ndarray,
    baseline: np.ndarray,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Change:
    """Relative change of `variant` against `baseline` and its percentile interval.

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
    reps = 100.0 * (mv[ok] - mb[ok]) / mb[ok]
    if reps.size == 0:
        lo = hi = float("nan")
    else:
        tail = (1.0 - level) / 2.0 * 100.0
        lo, hi = (float(x) for x in np.percentile(reps, [tail, 100.0 - tail]))
    return Change(point, lo, hi, nb, v.shape[0], b.shape[0], int((~ok).sum()))


def bootstrap_mean_interval(scores: np.ndarray, resamples: int = 2000, level: float = 0.95,
                            seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high) of scores shaped (seeds, benchmarks), resampling both axes."""
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if s.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    bench = rng.integers(0, s.shape[1], size=(resamples, s.shape[1]))
    seeds = rng.integers(0, s.shape[0], size=(resamples, s.shape[0]))
    per = s[seeds].mean(axis=1)
    reps = per[np.arange(resamples)[:, None], bench].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(reps, [tail, 100.0 - tail])
    return float(s.mean()), float(lo), float(hi)
