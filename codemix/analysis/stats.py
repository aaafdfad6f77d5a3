"""Scores, paired changes and their bootstrap intervals, with every noise the data has.

Data model
----------
A *score set* is ``dict[str, np.ndarray]``: benchmark (or held-out family) name ->
per-example values shaped ``(seeds, examples)`` (0/1 accuracy, a probability,
per-row bits-per-byte). One seed can be passed as a 1-D array. Within a set every
benchmark has the same seeds (seed s is one trained model, evaluated on all of
them). Two sets that are compared have the same benchmark names and, per
benchmark, the same example columns in the same order (column j is example j in
both; the caller aligns them); their seed counts may differ.

  benchmark score = mean over seeds of the mean over examples
  category score  = unweighted mean over the set's benchmarks       (`score`)

The change of variant V against baseline B is ``100 * (V - B) / B`` percent
(``kind="relative"``) or ``V - B`` (``kind="absolute"``) of the category scores.

What the interval is about
--------------------------
The estimand is the change of *expected* category scores: expected over the
examples each benchmark could have drawn from its population of questions, over
training seeds, and over the evaluation's own randomness (sampling, which lands
in the per-example values). The benchmarks themselves are, by default, a fixed
design: a category is a named list of benchmarks and the claim is about that
list. Pass ``resample_benchmarks=True`` to also generalise over a population of
benchmarks the list is a draw from (see the last section for why that is not
the default).

The bootstrap (one replicate)
-----------------------------
Per set and benchmark, the ``(seeds, examples)`` table Y is split the way a
two-way (seed + example) analysis of variance splits it:

  * column means c_i = mean over seeds of Y[:, i]       (one value per example)
  * seed deviations g_s = mean over examples of Y[s, :] - mean(Y)

A replicate of a set's benchmark score is ``mean(c[I]) + scale * mean(g[S])``:

  (b) I: example indices drawn with replacement within each benchmark, the SAME
      indices for V and B (paired by example id, so examples that are hard for
      both cancel out of the change);
  (c) S: seed indices drawn with replacement, independently for V and B (seeds
      are not paired across variants) and shared by all benchmarks of a set
      (one seed is one model, good or bad on all benchmarks at once).

Why c and g instead of drawing whole (seed, example) cells: seeds and examples
are *crossed* (every seed answers every example). Drawing rows and columns of
the table independently counts the per-cell noise (a coin flip of a 0/1 answer)
three times over (Owen 2007, "The pigeonhole bootstrap"): once in the row draw,
once in the column draw, once in their product. Here each variance component
enters once. ``mean(c[I])`` carries the example spread and the per-cell noise
averaged over the seeds, which is exactly their share of the true variance. The
seed deviations g also carry per-cell noise (``sigma_e^2 / examples``), already
counted in c, so the seed term is shrunk to the seed component alone and
reflated for the bootstrap's ``(R-1)/R`` bias (the residual bootstrap for
random-effects models, Carpenter, Goldstein & Rasbash 2003). With the category
seed deviation G_s = mean over benchmarks of g_s, R seeds,
``s2 = var(G, ddof=1)`` and the per-cell noise variance of G,
``v_e = sum_k MSE_k / n_k / K^2`` (MSE_k the residual mean square of the
seed + example fit of benchmark k),

    scale^2 = R / (R - 1) * max(0, s2 - v_e) / s2

so the replicates' seed term has expectation ``sigma_seed^2 / R``, the true
share. With one seed the seed term is 0: seed noise is then invisible, and the
interval speaks of that trained model (it cannot be wider than the data allow).

(a) With ``resample_benchmarks=True`` each replicate first draws the category's
benchmarks with replacement, the same draw for V and B, and every drawn
occurrence gets its own example draw; the seed term of a drawn benchmark uses
its own g and the set's scale.

The replicate's statistic is computed from the resampled V and B scores, and
the interval is the percentile interval (2.5th and 97.5th percentiles for
``level=0.95``). Relative replicates whose baseline score is 0 are undefined:
they are left out and counted in ``Change.undefined``.

Calibration and its limits (tests/analysis/test_stats.py)
---------------------------------------------------------
Simulated experiments: 2-4 fixed benchmarks of 100-1000 examples with
Beta-distributed difficulty, V and B answering the same examples with the same
(or 1.1x) success probabilities, 0/1 answers, each seed shifting all of a
model's probabilities (sd 1 point). Share of 1,000 experiments whose 95%
interval of the relative change holds the true change (0, or +10%),
``test_interval_is_calibrated_with_benchmarks_fixed``:

    one seed, no seed noise      95.3% (null)   95.3% (+10%)
    2-3 seeds, seed sd 1 point   93.8%          93.7%

Known gaps, measured and documented rather than hidden:

  * One seed cannot show seed noise: with a 1-point seed sd, one seed each
    covers about 87%. The interval is then about those two trained models.
  * Few seeds: 2-3 seeds estimate their variance from 1-2 degrees of freedom,
    so intervals are short when seed noise dominates (2-point seed sd: about
    88-90%; seed noise alone: 79% with 2 seeds, 87% with 3, 96% with 10).
  * Few informative examples: a percentile interval needs enough examples on
    which V and B differ; with a handful (say 4 discordant 0/1 answers, all one
    way) it is too narrow (an exact sign test gives p = 0.125).
  * Benchmark resampling with 2-4 benchmarks: the bootstrap over K units has
    ``(K-1)/K`` of the variance and only K distinct values, so it under-covers
    the benchmark-population estimand (benchmark effects with sd 15%: about 85%
    at K = 2-4, against 63% for the fixed-list interval). With many benchmarks it
    is calibrated or a little conservative, because within-benchmark noise
    enters twice (in the spread of benchmark means and in the example draw):
    96-97% at K = 20-30 (fixed list: 77-82%),
    ``test_benchmark_resampling_is_calibrated_with_many_benchmarks``. That is
    why it is opt-in: with a fixed list the default intervals are calibrated;
    ``resample_benchmarks=True`` widens them to generalise over benchmarks,
    honestly so only with many.

The older API on benchmark-level scores shaped ``(seeds, benchmarks)``, which
resamples benchmarks and seeds only and so never sees the sampling noise of
examples, is in codemix/analysis/benchmark_bootstrap.py.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

ScoreSet = Mapping[str, np.ndarray]

# Largest index block (draws x examples) built at once; bounds memory.
_CHUNK_CELLS = 1 << 21


@dataclasses.dataclass(frozen=True)
class Change:
    """A change against a baseline with its bootstrap interval.

    The first seven fields keep their old positional order.
    """

    value: float  # percent for kind="relative", score units for kind="absolute"
    low: float
    high: float
    n_benchmarks: int
    n_seeds: int  # of the variant (the baseline's are in base_seeds)
    base_seeds: int
    undefined: int = 0  # replicates dropped because the baseline score was 0
    kind: str = "relative"
    n_examples: int = 0  # summed over benchmarks (0: benchmark-level scores only)
    resampled_benchmarks: bool = True  # the old API always resampled them
    resamples: int = 0

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (False if undefined)."""
        return bool(self.low > 0 or self.high < 0)


def relative_change(variant: float, baseline: float) -> float:
    """100 * (variant - baseline) / baseline; NaN when the baseline is 0."""
    if baseline == 0 or not np.isfinite(baseline):
        return float("nan")
    return 100.0 * (variant - baseline) / baseline


def _tables(scores: ScoreSet) -> list[np.ndarray] | None:
    """The set's tables as float64 (seeds, examples), in key order; None if empty."""
    if not scores:
        return None
    tabs = [np.atleast_2d(np.asarray(v, dtype=np.float64)) for v in scores.values()]
    if any(t.ndim != 2 for t in tabs):
        raise ValueError("each benchmark's scores must be shaped (seeds, examples)")
    if any(t.size == 0 for t in tabs):
        return None
    seeds = {t.shape[0] for t in tabs}
    if len(seeds) > 1:
        raise ValueError(f"benchmarks of one score set have different seed counts {sorted(seeds)}; "
                         f"every seed must be evaluated on every benchmark")
    return tabs


def score(scores: ScoreSet) -> float:
    """Category score: unweighted mean over benchmarks of (mean over seeds of the mean over examples).

    NaN for an empty set or a benchmark without examples.
    """
    tabs = _tables(scores)
    if tabs is None:
        return float("nan")
    return float(np.mean([t.mean() for t in tabs]))


def _seed_part(tabs: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """Seed deviations g (benchmarks, seeds) and the shrink-and-reflate scale (module docstring)."""
    n_seeds = tabs[0].shape[0]
    g = np.stack([t.mean(axis=1) - t.mean() for t in tabs])
    if n_seeds < 2:
        return g, 0.0
    s2 = float(np.var(g.mean(axis=0), ddof=1))
    if s2 <= 0:
        return g, 0.0
    v_e = 0.0
    for t in tabs:
        n = t.shape[1]
        if n > 1:
            resid = t - t.mean(axis=1, keepdims=True) - t.mean(axis=0, keepdims=True) + t.mean()
            v_e += float((resid**2).sum()) / ((n_seeds - 1) * (n - 1)) / n
    v_e /= len(tabs) ** 2
    return g, float(np.sqrt(n_seeds / (n_seeds - 1) * max(0.0, s2 - v_e) / s2))


def _replicates(sets: list[list[np.ndarray]], resamples: int, resample_benchmarks: bool,
                rng: np.random.Generator) -> np.ndarray:
    """Category-score replicates, shaped (len(sets), resamples); see the module docstring.

    All sets share the benchmark draw and the example indices; each set draws its own seeds.
    """
    n_bench = len(sets[0])
    n_slots = n_bench  # benchmark occurrences per replicate
    bench = (rng.integers(0, n_bench, size=(resamples, n_slots)) if resample_benchmarks
             else np.broadcast_to(np.arange(n_bench), (resamples, n_slots)))
    # Example part: every (replicate, slot) that holds benchmark k gets its own
    # example draw, the same indices for all sets (the pairing by example id).
    slot_ex = np.empty((resamples, n_slots, len(sets)))
    for k in range(n_bench):
        cols = [s[k].mean(axis=0) for s in sets]  # per set: (examples,)
        n = cols[0].shape[0]
        rep, slot = np.nonzero(bench == k) if resample_benchmarks else (np.arange(resamples), k)
        count = resamples if not resample_benchmarks else rep.size
        step = max(1, _CHUNK_CELLS // n)
        for lo in range(0, count, step):
            hi = min(count, lo + step)
            idx = rng.integers(0, n, size=(hi - lo, n))
            for j, c in enumerate(cols):  # one gather per set: faster than a gather of pairs
                slot_ex[rep[lo:hi], slot if np.isscalar(slot) else slot[lo:hi], j] = c[idx].mean(axis=1)
    rows = np.arange(resamples)[:, None]
    out = np.empty((len(sets), resamples))
    for j, tabs in enumerate(sets):
        g, scale = _seed_part(tabs)
        n_seeds = g.shape[1]
        if scale > 0:
            drawn = rng.integers(0, n_seeds, size=(resamples, n_seeds))
            term = scale * g[:, drawn].mean(axis=-1).T  # (resamples, benchmarks)
            seed_term = term[rows, bench]
        else:
            seed_term = 0.0
        out[j] = (slot_ex[:, :, j] + seed_term).mean(axis=1)
    return out


def percentiles(reps: np.ndarray, level: float) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates `reps` at coverage `level` (NaNs when empty)."""
    if reps.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(reps, [tail, 100.0 - tail])
    return float(lo), float(hi)


def paired_change(variant: ScoreSet, baseline: ScoreSet, kind: str = "relative", resamples: int = 2000,
                  level: float = 0.95, seed: int = 0, resample_benchmarks: bool = False) -> Change:
    """Change of `variant`'s category score against `baseline`'s, with a paired bootstrap interval.

    Args:
      variant, baseline: score sets (module docstring) on the same benchmarks, each
        benchmark's example columns aligned by example id; seed counts may differ.
      kind: "relative" (100 * (V - B) / B, percent) or "absolute" (V - B).
      resamples: bootstrap replicates.
      level: interval coverage (0.95: the 2.5th to 97.5th percentile).
      seed: numpy seed of the resampling (fixed, so reruns agree).
      resample_benchmarks: also draw benchmarks with replacement, to generalise over
        a population of benchmarks (honest only with many; see the module docstring).

    Returns NaN value and interval for empty input.
    """
    if kind not in ("relative", "absolute"):
        raise ValueError(f"kind must be 'relative' or 'absolute', not {kind!r}")
    if set(variant) != set(baseline):
        raise ValueError(f"variant and baseline have different benchmarks "
                         f"({sorted(set(variant) ^ set(baseline))}); align them on the same benchmarks first.")
    names = sorted(variant)
    v_tabs = _tables({k: variant[k] for k in names})
    b_tabs = _tables({k: baseline[k] for k in names})
    if v_tabs is None or b_tabs is None:
        nan = float("nan")
        return Change(nan, nan, nan, len(names), 0, 0, 0, kind, 0, resample_benchmarks, resamples)
    for k, v, b in zip(names, v_tabs, b_tabs):
        if v.shape[1] != b.shape[1]:
            raise ValueError(f"{k}: variant has {v.shape[1]} examples but the baseline has {b.shape[1]}; "
                             f"align them by example id first.")
    sv, sb = score(variant), score(baseline)
    mv, mb = _replicates([v_tabs, b_tabs], resamples, resample_benchmarks, np.random.default_rng(seed))
    undefined = 0
    if kind == "relative":
        point = relative_change(sv, sb)
        ok = mb != 0
        undefined = int((~ok).sum())
        reps = 100.0 * (mv[ok] - mb[ok]) / mb[ok]
    else:
        point = sv - sb
        reps = mv - mb
    lo, hi = percentiles(reps, level)
    return Change(point, lo, hi, len(names), v_tabs[0].shape[0], b_tabs[0].shape[0], undefined, kind,
                  int(sum(t.shape[1] for t in v_tabs)), resample_benchmarks, resamples)


def mean_interval(scores: ScoreSet, resamples: int = 2000, level: float = 0.95, seed: int = 0,
                  resample_benchmarks: bool = False) -> tuple[float, float, float]:
    """(category score, low, high) of one score set, by the same bootstrap as `paired_change`."""
    tabs = _tables(scores)
    if tabs is None:
        nan = float("nan")
        return nan, nan, nan
    reps = _replicates([tabs], resamples, resample_benchmarks, np.random.default_rng(seed))[0]
    lo, hi = percentiles(reps, level)
    return score(scores), lo, hi


def seed_std(per_seed: np.ndarray) -> float:
    """Sample standard deviation (ddof=1) of a metric over seeds; NaN with fewer than 2 seeds."""
    x = np.asarray(per_seed, dtype=np.float64).ravel()
    return float(np.std(x, ddof=1)) if x.size >= 2 else float("nan")


def signal_to_noise(by_variant: Mapping[str, np.ndarray]) -> float:
    """Signal-to-noise ratio of one metric across variants (Heineman et al. 2025, arXiv 2508.13144).

    Input: variant -> that metric's final value per seed, shaped (seeds,).

    The paper defines, for model scores m_j with mean m̄,
      signal = relative dispersion = max_{j,k} |m_j - m_k| / m̄,
      noise  = relative standard deviation = std(scores over a model's final n checkpoints) / m̄,
    and SNR = signal / noise. Here m_j is variant j's seed mean, and the noise is
    the pooled within-variant standard deviation over seeds,
      sqrt(sum_j sum_s (x_js - m_j)^2 / sum_j (seeds_j - 1)),
    divided by the same m̄. Two departures, both forced by the data: the noise is
    seed-to-seed rather than checkpoint-to-checkpoint (we keep final values per
    seed, and across-seed spread is what a comparison of variants must beat), and
    it uses ddof=1 pooled over variants because with 2-3 seeds per variant the
    paper's population std (ddof=0) would understate it by up to a factor sqrt(2).
    As signal and noise share m̄, SNR = (max_j m_j - min_j m_j) / pooled std.

    NaN with fewer than two variants or when no variant has two seeds (noise
    cannot be estimated); inf when the seeds agree exactly but variants differ.
    """
    vals = [np.asarray(v, dtype=np.float64).ravel() for v in by_variant.values()]
    vals = [v for v in vals if v.size > 0]
    if len(vals) < 2:
        return float("nan")
    dof = sum(v.size - 1 for v in vals)
    if dof == 0:
        return float("nan")
    means = np.array([v.mean() for v in vals])
    spread = float(means.max() - means.min())
    noise = float(np.sqrt(sum(((v - v.mean()) ** 2).sum() for v in vals) / dof))
    if noise == 0:
        return float("inf") if spread > 0 else float("nan")
    return spread / noise
