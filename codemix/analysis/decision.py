"""Do the small runs decide? Decision accuracy, signal-to-noise, and what it would take.

Decision accuracy (DataDecide, Magnusson et al. 2025, arXiv 2504.11393): over
every pair of variants, the fraction that rung r orders as the top rung (the
largest size, the reference) does. Ties, stated: a pair the top rung scores
exactly alike has no right answer and is left out (`Decision.tied_top` counts
them); a pair rung r scores alike but the top rung does not is a coin flip and
counts one half. Scores are oriented by `higher_is_better`, which only names
the better side; the agreement of two orderings does not depend on it.

Its interval (`decision_accuracy`): a bootstrap that redraws every noise
source the scores have. From a tidy table of per-example values (rung,
variant, seed, id, value), each resample draws, per (rung, variant) cell, its
seeds with replacement, and one draw of the example ids with replacement
shared by every cell (the runs are scored on the same examples, so the draw is
paired); a cell's score is the mean over its drawn seeds of the mean over the
drawn examples. Decision accuracy is recomputed on the resampled scores of
both rungs, and the interval is the percentile interval. A cell with one seed
contributes no seed noise (it cannot: say so where seeds are single).

Signal and noise (Heineman et al. 2025, arXiv 2508.13144): signal = the
relative dispersion of the variants' scores, max_{i,j} |s_i - s_j| / mean(s);
noise = the relative standard deviation of one run's score over its last K
in-loop evaluations (sd / mean); SNR = signal / noise (`snr`). Beside it,
`seed_snr` uses the pooled seed standard deviation of the variants' runs as
the noise, the noise today's report already shows.

Seeds to reach a decision accuracy (`seeds_needed`), the method: a normal
model per pair. With R seeds per variant and pooled seed sd sigma at rung r,
the mean difference of a pair is estimated with sd sigma * sqrt(2 / R), so
rung r orders the pair as the top rung does with probability
Phi(s_ij * Delta_ij / (sigma sqrt(2 / R))), Delta_ij the pair's mean
difference at rung r and s_ij the top rung's sign. The predicted decision
accuracy is the mean over pairs; `seeds_needed` is the smallest R where it
reaches the goal, or None when even R -> infinity (the fraction of pairs whose
rung-r means already agree with the top) falls short: then more seeds at
that rung cannot help and only a larger rung can. The Delta_ij are plugged
in as measured (their own noise is ignored), which makes the answer
optimistic at small R.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from codemix.errors import LawError

LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Decision:
    """Decision accuracy of one rung against the reference.

    accuracy: point estimate; low, high: bootstrap interval (NaN without one);
    pairs: pairs counted; tied_top: pairs left out because the reference ties them;
    tied_rung: pairs the rung ties (counted as 1/2).
    """

    accuracy: float
    low: float
    high: float
    pairs: int
    tied_top: int
    tied_rung: int


def agreement(rung: Mapping[str, float], top: Mapping[str, float]) -> tuple[float, int, int, int]:
    """(decision accuracy, pairs counted, pairs tied at the top, pairs tied at the rung) over the
    variants both carry (see the module docstring for ties)."""
    names = [v for v in top if v in rung]
    right, pairs, tied_top, tied_rung = 0.0, 0, 0, 0
    for a, b in itertools.combinations(names, 2):
        st = np.sign(top[a] - top[b])
        if st == 0:
            tied_top += 1
            continue
        sr = np.sign(rung[a] - rung[b])
        pairs += 1
        if sr == 0:
            tied_rung += 1
            right += 0.5
        elif sr == st:
            right += 1.0
    return (right / pairs if pairs else float("nan")), pairs, tied_top, tied_rung


def _cell_arrays(table: pd.DataFrame) -> tuple[list, dict, np.ndarray]:
    ids = np.array(sorted(table["id"].astype(str).unique()))
    pos = {i: k for k, i in enumerate(ids)}
    cells = {}
    for (rung, variant), g in table.groupby(["rung", "variant"], sort=False):
        seeds = sorted(g["seed"].unique())
        mat = np.full((len(seeds), len(ids)), np.nan)
        for s_i, s in enumerate(seeds):
            gs = g[g["seed"] == s]
            mat[s_i, [pos[i] for i in gs["id"].astype(str)]] = gs["value"].to_numpy(np.float64)
        cells[(rung, variant)] = mat
    return list(ids), cells, ids


def scores(table: pd.DataFrame) -> dict:
    """{(rung, variant): score} from a tidy table: mean over seeds of the mean over examples."""
    _, cells, _ = _cell_arrays(table)
    return {k: float(np.nanmean(np.nanmean(m, axis=1))) for k, m in cells.items()}


def _check(table: pd.DataFrame) -> None:
    need = {"rung", "variant", "seed", "id", "value"}
    if not need <= set(table.columns):
        raise LawError(f"decision accuracy needs columns {sorted(need)}; got {sorted(table.columns)}.")


def decision_accuracy(table: pd.DataFrame, top, resamples: int = 1000, level: float = LEVEL,
                      rng_seed: int = 0) -> dict:
    """{rung: Decision} of every rung (the top included, which agrees with itself by construction)
    against rung `top`, with the bootstrap of the module docstring."""
    _check(table)
    _, cells, ids = _cell_arrays(table)
    rungs = list(dict.fromkeys(table["rung"]))
    if top not in rungs:
        raise LawError(f"reference rung {top!r} has no runs; rungs: {rungs}.")
    variants = list(dict.fromkeys(table["variant"]))

    def score_all(seed_draw, id_draw):
        out = {}
        for (r, v), m in cells.items():
            sub = m[seed_draw[(r, v)]][:, id_draw] if id_draw is not None else m[seed_draw[(r, v)]]
            out[(r, v)] = float(np.nanmean(np.nanmean(sub, axis=1)))
        return out

    full = {k: np.arange(len(m)) for k, m in cells.items()}
    point = score_all(full, None)
    rng = np.random.default_rng(rng_seed)
    boots = {r: [] for r in rungs}
    for _ in range(resamples):
        sd = {k: rng.integers(0, len(m), len(m)) for k, m in cells.items()}
        idd = rng.integers(0, len(ids), len(ids))
        s = score_all(sd, idd)
        t = {v: s[(top, v)] for v in variants if (top, v) in s}
        for r in rungs:
            boots[r].append(agreement({v: s[(r, v)] for v in variants if (r, v) in s}, t)[0])
    t = {v: point[(top, v)] for v in variants if (top, v) in point}
    q = (1 - level) / 2
    out = {}
    for r in rungs:
        acc, pairs, tt, tr = agreement({v: point[(r, v)] for v in variants if (r, v) in point}, t)
        b = np.array(boots[r], float)
        b = b[np.isfinite(b)]
        lo, hi = (float(np.quantile(b, q)), float(np.quantile(b, 1 - q))) if len(b) else (math.nan, math.nan)
        out[r] = Decision(acc, lo, hi, pairs, tt, tr)
    return out


def relative_dispersion(values: Sequence[float]) -> float:
    """Heineman et al.'s signal: max pairwise |difference| over the mean."""
    v = np.asarray(list(values), np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2 or np.mean(v) == 0:
        return float("nan")
    return float((v.max() - v.min()) / abs(np.mean(v)))


def checkpoint_noise(curve: Sequence[float], k: int = 5) -> float:
    """Heineman et al.'s noise: relative sd of one run's last k in-loop evaluations (NaN with < 2)."""
    v = np.asarray(curve, np.float64)
    v = v[np.isfinite(v)][-k:]
    if len(v) < 2 or np.mean(v) == 0:
        return float("nan")
    return float(np.std(v, ddof=1) / abs(np.mean(v)))


def snr(final: Mapping[str, float], curve: Sequence[float], k: int = 5) -> float:
    """Signal (dispersion of the variants' final scores) over the noise of one run's last k evaluations."""
    n = checkpoint_noise(curve, k)
    return relative_dispersion(list(final.values())) / n if n and math.isfinite(n) and n > 0 else float("nan")


def pooled_seed_sd(per_variant: Mapping[str, Sequence[float]]) -> tuple[float, int]:
    """(pooled seed sd, degrees of freedom) over variants with >= 2 seed scores."""
    ss, df = 0.0, 0
    for v in per_variant.values():
        v = np.asarray(v, np.float64)
        v = v[np.isfinite(v)]
        if len(v) >= 2:
            ss += float(np.sum((v - v.mean()) ** 2))
            df += len(v) - 1
    return (math.sqrt(ss / df) if df else float("nan")), df


def seed_snr(per_variant: Mapping[str, Sequence[float]]) -> float:
    """Signal over the pooled seed sd relative to the mean (NaN without a variant with 2 seeds)."""
    sd, _ = pooled_seed_sd(per_variant)
    means = [float(np.nanmean(v)) for v in per_variant.values()]
    if not math.isfinite(sd) or sd == 0:
        return float("nan")
    return relative_dispersion(means) / (sd / abs(np.mean(means)))


def predicted_accuracy(rung_means: Mapping[str, float], top_means: Mapping[str, float], sigma: float,
                       seeds: float) -> float:
    """The normal model's decision accuracy with `seeds` seeds per variant (module docstring)."""
    ps = []
    for a, b in itertools.combinations([v for v in top_means if v in rung_means], 2):
        st = np.sign(top_means[a] - top_means[b])
        if st == 0:
            continue
        delta = st * (rung_means[a] - rung_means[b])
        if math.isinf(seeds) or sigma == 0:
            ps.append(1.0 if delta > 0 else 0.5 if delta == 0 else 0.0)
        else:
            ps.append(float(sps.norm.cdf(delta / (sigma * math.sqrt(2.0 / seeds)))))
    return float(np.mean(ps)) if ps else float("nan")


def seeds_needed(rung_means: Mapping[str, float], top_means: Mapping[str, float], sigma: float,
                 goal: float = 0.8, max_seeds: int = 1000) -> int | None:
    """Smallest seeds per variant whose predicted decision accuracy reaches `goal`; None if none can."""
    if not math.isfinite(sigma):
        return None
    if predicted_accuracy(rung_means, top_means, sigma, math.inf) < goal:
        return None
    for r in range(1, max_seeds + 1):
        if predicted_accuracy(rung_means, top_means, sigma, r) >= goal:
            return r
    return None
