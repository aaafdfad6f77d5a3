"""Scores, paired changes and their intervals, calibrated at the seed and example counts an experiment has.

Data model
----------
A *score set* is ``dict[str, np.ndarray]``: benchmark (or held-out family) name ->
per-example values shaped ``(seeds, examples)`` (0/1 accuracy, a probability,
per-document bits-per-byte). One seed can be passed as a 1-D array. Within a set
every benchmark has the same seeds (seed s is one trained model, evaluated on
all of them). Two sets that are compared have the same benchmark names and, per
benchmark, the same example columns in the same order (column j is example j in
both; the caller aligns them); their seed counts may differ.

  benchmark score = mean over seeds of the mean over examples
  category score  = unweighted mean over the set's benchmarks       (`score`)

The change of variant V against baseline B is ``100 * (V - B) / B`` percent
(``kind="relative"``) or ``V - B`` (``kind="absolute"``) of the category scores.

The model
---------
The estimand is the change of *expected* category scores: expected over the
examples each benchmark could have drawn from its population, over training
seeds, and over the evaluation's own randomness. Benchmarks are a fixed list by
default (``resample_benchmarks=True`` generalises over a population of them).
One value is, per benchmark,

    Y[s, i] = mu + a_s + b_i + e_si        (seed s, example i; crossed)

with a_s the seed effect (one trained model, good or bad on every example and
benchmark at once, variance sigma_a^2), b_i the example effect and e_si the
seed-by-example noise (a coin flip of a 0/1 answer, a document one seed happens
to model well). A side's score then has variance
``sigma_a^2 / R + (var(b) + sigma_e^2 / R) / n`` for R seeds and n examples.

The interval (t, with Welch-Satterthwaite degrees of freedom)
-------------------------------------------------------------
Relative changes are taken on the log scale, ``L = log(S_V / S_B)``, and
linearised (delta method), which keeps the interval inside the positive range
and handles the skew of a ratio of means; absolute changes are ``S_V - S_B``.

  * Example term. Per benchmark k, the paired example differences
    ``u_i = c^V_i / S_V - c^B_i / S_B`` (``c_i`` the mean over a side's seeds of
    example i; absolute: ``c^V_i - c^B_i``), so examples hard for both cancel.
    ``Var = sum_k var(u_k) / (n_k K^2)`` with ``n_k - 1`` degrees of freedom per
    benchmark. It carries the example spread and the seed-by-example noise
    averaged over each side's seeds.
  * Seed term. ``sigma_a^2 (1/R_V + 1/R_B)``, with sigma_a^2 **pooled over
    every seed group of the experiment** (`SeedNoise`, `seed_noise`): groups of
    runs that differ only in the seed (a variant's final stage), each giving
    the variance of its seed means G_s (mean over the measure's benchmarks) on
    ``R - 1`` degrees of freedom, less the part of it that is the per-cell noise
    already counted in the example term (``v_e = sum_k MSE_k / n_k / K^2``,
    MSE_k the residual mean square of the two-way fit). For relative changes
    it is pooled as a relative variance (``sigma_a^2 / S^2``, per group), so
    variants at different levels (bits per byte of 1.2 and of 3.0) share one
    coefficient of variation. Two seeds give one degree of freedom each; eight
    variants with two seeds give eight, and the t quantile pays for what is left.
  * ``resample_benchmarks=True``: the example term is replaced by the spread of
    the per-benchmark means of u over the K benchmarks (``var / K``, ``K - 1``
    degrees of freedom), which also holds each benchmark's example noise.

The two terms are added and the interval is ``L +- t_{df} * se`` with
Satterthwaite's ``df = se^4 / sum(term^2 / df_term)``: with 15 documents and
two seeds the quantile is that of a t on few degrees of freedom, not of the
normal. `Change.p_value` is the two-sided p-value of the same t statistic (for
multiple-comparison procedures, codemix/analysis/findings.py), and
`Change.mde` the smallest change a 5%-level test detects with 80% power at this
experiment's size (``(t_{0.975} + t_{0.80}) * se``, on the change's scale).

Assumptions, stated: seed variance is the same, as a coefficient of variation,
across the groups that are pooled (a variant whose seeds scatter twice as much
as the others' gets an interval too short; the A/A check in
benchmarks/aa_calibration.py measures what that costs on real runs); example
effects are independent draws; and the t approximation holds for the example
means (checked for lognormal per-document values with log-sd up to 1 at 15
documents, tests/analysis/test_calibration.py).

One seed
--------
When no group of the experiment has two seeds, seed noise is not measured: the
interval holds example noise only, `Change.seed_noise` says "not measured", and
verdicts built on it are withheld (codemix/analysis/findings.py). When other
variants of the experiment have seeds, their pooled variance serves a
one-seed side.

The older API on benchmark-level scores shaped ``(seeds, benchmarks)`` is in
codemix/analysis/benchmark_bootstrap.py.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.stats

ScoreSet = Mapping[str, np.ndarray]
NOT_MEASURED = "seed noise not measured (one seed everywhere)"


@dataclasses.dataclass(frozen=True)
class Change:
    """A change against a baseline with its interval.

    The first seven fields keep their old positional order.
    """

    value: float  # percent for kind="relative", score units for kind="absolute"
    low: float
    high: float
    n_benchmarks: int
    n_seeds: int  # of the variant (the baseline's are in base_seeds)
    base_seeds: int
    undefined: int = 0  # bootstrap replicates dropped for a 0 baseline (old API); 0 here
    kind: str = "relative"
    n_examples: int = 0  # summed over benchmarks (0: benchmark-level scores only)
    resampled_benchmarks: bool = True  # the old API always resampled them
    resamples: int = 0  # bootstrap replicates (old API); 0 for the t interval
    p_value: float = float("nan")  # two-sided, of "no change"
    df: float = float("nan")  # Satterthwaite degrees of freedom of the interval
    mde: float = float("nan")  # smallest change detected with 80% power at the 5% level, same units as value
    seed_noise: str = ""  # where the seed term came from ("pooled over 8 groups, 8 df", NOT_MEASURED)

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (False if undefined)."""
        return bool(self.low > 0 or self.high < 0)

    @property
    def seed_noise_measured(self) -> bool:
        return self.seed_noise != NOT_MEASURED


@dataclasses.dataclass(frozen=True)
class SeedNoise:
    """Seed variance of one measure's score for one seed, pooled over an experiment's seed groups.

    rel_var: sigma_a^2 / S^2 (for relative changes); abs_var: sigma_a^2.
    df: sum over the groups of (seeds - 1); 0 means not measured.
    eff_df: degrees of freedom of the seed term, less than df when much of the
      seed means' spread is per-cell noise (which the example term holds).
    """

    rel_var: float = 0.0
    abs_var: float = 0.0
    df: int = 0
    groups: int = 0
    eff_df: float = 0.0  # df of sigma_a^2 = s2 - v_e (Satterthwaite), at most df

    def describe(self) -> str:
        if not self.df:
            return NOT_MEASURED
        return f"pooled over {self.groups} seed group{'s' if self.groups != 1 else ''}, {self.df} df"


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


def _group_seed_variance(tabs: list[np.ndarray]) -> tuple[float, float]:
    """(var of the seed means G_s, its per-cell-noise part v_e) of one seed group (module docstring)."""
    n_seeds = tabs[0].shape[0]
    g = np.mean([t.mean(axis=1) for t in tabs], axis=0)
    s2 = float(np.var(g, ddof=1))
    v_e = 0.0
    for t in tabs:
        n = t.shape[1]
        if n > 1:
            resid = t - t.mean(axis=1, keepdims=True) - t.mean(axis=0, keepdims=True) + t.mean()
            v_e += float((resid**2).sum()) / ((n_seeds - 1) * (n - 1)) / n
    return s2, v_e / len(tabs) ** 2


def seed_noise(groups: Sequence[ScoreSet]) -> SeedNoise:
    """Seed variance pooled over seed groups (each a score set whose rows are seeds of one configuration).

    Groups with one seed add nothing; relative variances are pooled per group
    on its own score (module docstring). Groups must not share runs (the
    caller deduplicates).
    """
    df = 0
    n = 0
    rel = [0.0, 0.0]
    ab = [0.0, 0.0]
    for g in groups:
        tabs = _tables(g)
        if tabs is None or tabs[0].shape[0] < 2:
            continue
        r = tabs[0].shape[0]
        s2, v_e = _group_seed_variance(tabs)
        level = float(np.mean([t.mean() for t in tabs]))
        df += r - 1
        n += 1
        ab[0] += (r - 1) * s2
        ab[1] += (r - 1) * v_e
        if level != 0:
            rel[0] += (r - 1) * s2 / level**2
            rel[1] += (r - 1) * v_e / level**2
    if not df:
        return SeedNoise()
    # sigma_a^2 = s2 - v_e: a difference of estimates has fewer degrees of freedom
    # than s2 alone (Satterthwaite; v_e's own df are many, n - 1 per seed), so a
    # seed term that is mostly per-cell noise weighs little and counts for little.
    rel_var, abs_var = max(0.0, rel[0] - rel[1]) / df, max(0.0, ab[0] - ab[1]) / df
    eff = df * (max(0.0, ab[0] - ab[1]) / ab[0]) ** 2 if ab[0] > 0 else 0.0
    return SeedNoise(rel_var, abs_var, df, n, eff)


def _satterthwaite(terms: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(total variance, df) of a sum of independent variance estimates given as (variance, df)."""
    terms = [(v, d) for v, d in terms if v > 0]
    total = float(sum(v for v, _ in terms))
    if total <= 0:
        return 0.0, float("inf")
    denom = sum(v * v / d for v, d in terms if np.isfinite(d))
    return total, (total * total / denom if denom > 0 else float("inf"))


def _kurtosis_df(x: np.ndarray) -> float:
    """Degrees of freedom of a variance estimated from the values x: n - 1 for
    normal values, fewer for heavy tails (``2 (n - 1) / (kurtosis - 1)``, capped
    at n - 1). A few documents that dominate a mean carry few degrees of freedom."""
    d = x - x.mean()
    m2 = float(np.mean(d * d))
    if m2 <= 0:
        return float(x.size - 1)
    kurt = float(np.mean(d**4)) / m2**2
    return float(min(x.size - 1, 2 * (x.size - 1) / max(kurt - 1, 1e-12)))


def _example_term(cols_v: list[np.ndarray], cols_b: list[np.ndarray] | None, relative: bool,
                  resample_benchmarks: bool) -> tuple[float, float]:
    """(variance, df) of the statistic's example noise, by the jackknife over each benchmark's examples.

    The statistic is log(S_V / S_B) (relative), S_V - S_B (absolute) or S_V
    (one side, `cols_b` None), with S the mean over benchmarks of the mean of
    each benchmark's example columns (seed means). Deleting one example at a
    time and taking the spread of the statistic is the delta method with the
    ratio's denominator left free, which a few heavy documents need; each
    benchmark's df comes from the kurtosis of its pseudo-values.
    """
    k = len(cols_v)
    sums_v = np.array([c.mean() for c in cols_v])
    sums_b = np.array([c.mean() for c in cols_b]) if cols_b is not None else None

    def stat(mv, mb):  # mv, mb: arrays of per-benchmark means (broadcast over deletions)
        if mb is None:
            return mv
        return np.log(mv / mb) if relative else mv - mb

    if resample_benchmarks and k >= 2:
        per = stat(sums_v, sums_b)
        return float(np.var(per, ddof=1)) / k, float(k - 1)
    terms = []
    for j in range(k):
        cv = cols_v[j]
        n = cv.size
        if n < 2:
            continue
        dv = (n * sums_v[j] - cv) / (n - 1)  # benchmark j's mean without example i
        mv = (sums_v.sum() - sums_v[j] + dv) / k
        mb = None
        if cols_b is not None:
            db = (n * sums_b[j] - cols_b[j]) / (n - 1)
            mb = (sums_b.sum() - sums_b[j] + db) / k
        full = stat(sums_v.mean(), sums_b.mean() if sums_b is not None else None)
        if relative:
            ok = (mv > 0) & (mb > 0)
            # A deletion that leaves a 0 score (one right answer in all): its linearised value.
            linear = full + mv / sums_v.mean() - mb / sums_b.mean()
            stat_j = np.where(ok, np.log(np.where(ok, mv, 1.0) / np.where(ok, mb, 1.0)), linear)
        else:
            stat_j = stat(mv, mb)
        pseudo = n * full - (n - 1) * stat_j
        var = float((n - 1) / n * np.sum((stat_j - stat_j.mean()) ** 2))
        terms.append((var, _kurtosis_df(pseudo)))
    return _satterthwaite(terms)


def _t_interval(point: float, var: float, df: float, level: float) -> tuple[float, float, float, float]:
    """(low, high, two-sided p of 0, 80%-power detectable effect) of a t statistic."""
    if var <= 0:
        p = 0.0 if point != 0 else 1.0
        return point, point, p, 0.0
    se = float(np.sqrt(var))
    df = min(df, 1e6)
    half = float(scipy.stats.t.ppf(0.5 + level / 2, df)) * se
    p = float(2 * scipy.stats.t.sf(abs(point) / se, df))
    mde = float(scipy.stats.t.ppf(0.975, df) + scipy.stats.t.ppf(0.8, df)) * se
    return point - half, point + half, p, mde


def paired_change(variant: ScoreSet, baseline: ScoreSet, kind: str = "relative", level: float = 0.95,
                  noise: SeedNoise | None = None, resample_benchmarks: bool = False) -> Change:
    """Change of `variant`'s category score against `baseline`'s, with its t interval (module docstring).

    Args:
      variant, baseline: score sets (module docstring) on the same benchmarks, each
        benchmark's example columns aligned by example id; seed counts may differ.
      kind: "relative" (100 * (V - B) / B, percent) or "absolute" (V - B).
      level: interval coverage (0.95).
      noise: the experiment's pooled seed variance for this measure (`seed_noise`);
        None pools over the two sides alone.
      resample_benchmarks: generalise over a population of benchmarks (K - 1 df).

    Returns NaN value and interval for empty input, and for a relative change
    whose scores are not both positive.
    """
    if kind not in ("relative", "absolute"):
        raise ValueError(f"kind must be 'relative' or 'absolute', not {kind!r}")
    if set(variant) != set(baseline):
        raise ValueError(f"variant and baseline have different benchmarks "
                         f"({sorted(set(variant) ^ set(baseline))}); align them on the same benchmarks first.")
    names = sorted(variant)
    v_tabs = _tables({k: variant[k] for k in names})
    b_tabs = _tables({k: baseline[k] for k in names})
    nan = float("nan")
    if v_tabs is None or b_tabs is None:
        return Change(nan, nan, nan, len(names), 0, 0, 0, kind, 0, resample_benchmarks)
    for k, v, b in zip(names, v_tabs, b_tabs):
        if v.shape[1] != b.shape[1]:
            raise ValueError(f"{k}: variant has {v.shape[1]} examples but the baseline has {b.shape[1]}; "
                             f"align them by example id first.")
    rv, rb = v_tabs[0].shape[0], b_tabs[0].shape[0]
    n_examples = int(sum(t.shape[1] for t in v_tabs))
    noise = seed_noise([variant, baseline]) if noise is None else noise
    sv, sb = score(variant), score(baseline)
    base = {"n_benchmarks": len(names), "n_seeds": rv, "base_seeds": rb, "kind": kind, "n_examples": n_examples,
            "resampled_benchmarks": resample_benchmarks, "seed_noise": noise.describe()}
    relative = kind == "relative"
    if relative and not (sv > 0 and sb > 0):
        return Change(relative_change(sv, sb), nan, nan, **base)
    point, seed_var = (float(np.log(sv / sb)), noise.rel_var) if relative else (sv - sb, noise.abs_var)
    cols_v, cols_b = [v.mean(axis=0) for v in v_tabs], [b.mean(axis=0) for b in b_tabs]
    var, df = _satterthwaite([_example_term(cols_v, cols_b, relative, resample_benchmarks),
                              (seed_var * (1 / rv + 1 / rb), max(noise.eff_df, 1.0))])
    lo, hi, p, mde = _t_interval(point, var, df, level)
    if kind == "relative":
        value, lo, hi = relative_change(sv, sb), 100 * np.expm1(lo), 100 * np.expm1(hi)
        mde = 100 * np.expm1(mde)
    else:
        value = point
    return Change(value, float(lo), float(hi), p_value=p, df=df, mde=float(mde), **base)


def mean_interval(scores: ScoreSet, level: float = 0.95, noise: SeedNoise | None = None,
                  resample_benchmarks: bool = False) -> tuple[float, float, float]:
    """(category score, low, high) of one score set: the t interval of `paired_change` for one side."""
    tabs = _tables(scores)
    if tabs is None:
        nan = float("nan")
        return nan, nan, nan
    noise = seed_noise([scores]) if noise is None else noise
    s = score(scores)
    var, df = _satterthwaite([_example_term([t.mean(axis=0) for t in tabs], None, False, resample_benchmarks),
                              (noise.abs_var / tabs[0].shape[0], max(noise.eff_df, 1.0))])
    lo, hi, _, _ = _t_interval(s, var, df, level)
    return s, lo, hi


def percentiles(reps: np.ndarray, level: float) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates `reps` at coverage `level` (NaNs when empty)."""
    if reps.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(reps, [tail, 100.0 - tail])
    return float(lo), float(hi)


def holm(p_values: Sequence[float], alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down procedure: (adjusted p-values, rejected at `alpha`), in input order.

    NaN p-values (comparisons that could not be made) are neither counted in m
    nor rejected. Controls the chance of any false rejection among the
    family at `alpha`, whatever the dependence between the tests.
    """
    p = np.asarray(p_values, dtype=np.float64)
    adj = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m:
        order = ok[np.argsort(p[ok], kind="stable")]
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (m - rank) * p[i]))
            adj[i] = running
    return adj, np.nan_to_num(adj, nan=1.0) <= alpha


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
