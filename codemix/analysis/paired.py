"""Score sets for the intervals of stats.py, built from an experiment's per-example values.

codemix/analysis/stats.py computes scores, changes and intervals on *score
sets*: ``{benchmark: array (seeds, examples)}``, example columns aligned by id
between a variant and its baseline. This module builds them from
`ExperimentData.examples` (eval.json's "per_example" and the held-out sets'
per-document values) and says plainly when it cannot:

  * a `Measure` names what is compared: a per-example metric over a
    category's benchmarks (``prob_correct`` over reasoning, gold ``bpb`` over
    knowledge), each benchmark's primary metric, or one held-out family's bpb;
  * the runs of one side are its seeds (one row each); a benchmark enters
    only when every run of both sides has values for it, and within it only
    the example ids that all of them have (an inner join). What was left out
    is counted (`Pair.dropped_examples`, `Pair.dropped_benchmarks`);
  * where runs have evaluation records but no per-example values, the result
    says "missing (no per-example values)" and carries no interval: an
    interval from benchmark means alone would hide the sampling noise of the
    examples and be narrower than the data allow.

The interval itself is `stats.paired_change` / `stats.mean_interval`: a t
interval with the examples paired by id (jackknifed within each benchmark)
and a seed term whose variance is pooled over every seed group of the
experiment (`PairedScores.noise`: the final stage of each variant, runs
shared by two variants counted once), benchmarks as a fixed list. With two
seeds per variant, one variant alone estimates its seed variance on one
degree of freedom; the experiment's eight or nine variants give it eight.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from codemix.analysis import stats
from codemix.analysis.load import ExperimentData

NO_PER_EXAMPLE = "missing (no per-example values)"
HELDOUT_PREFIX = "heldout:"
FAMILY_ORDER = ("text", "text_hq", "code_web", "markup", "code_adjacent", "code_synthetic")


@dataclasses.dataclass(frozen=True)
class Measure:
    """One quantity that scores and comparisons are made on.

    Attributes:
      label: how tables name it ("reasoning prob_correct").
      metric: per-example metric name, or "primary" (each benchmark's primary metric).
      category: the benchmarks of this category enter; None when `benchmarks` lists them.
      benchmarks: explicit benchmark names (held-out: ("heldout:<family>",)).
      higher_is_better: False for bits per byte.
    """

    label: str
    metric: str
    category: str | None = None
    benchmarks: tuple[str, ...] = ()
    higher_is_better: bool = True


def continuous(category: str) -> Measure:
    """The best-signal metric of a category: prob_correct for reasoning, gold bpb otherwise."""
    if category == "reasoning":
        return Measure("reasoning prob_correct", "prob_correct", "reasoning")
    return Measure(f"{category} bpb", "bpb", category, higher_is_better=False)


def primary(category: str) -> Measure:
    return Measure(f"{category} primary", "primary", category)


def heldout(family: str) -> Measure:
    return Measure(f"held-out {family} bpb", "bpb", None, (f"{HELDOUT_PREFIX}{family}",), False)


def families(data: ExperimentData) -> list[str]:
    """Held-out families that any run measured, in the corpus's order."""
    have = set(data.heldout["family"]) if len(data.heldout) else set()
    if len(data.examples):
        b = data.examples["benchmark"].astype(str)
        have |= {x[len(HELDOUT_PREFIX):] for x in b[b.str.startswith(HELDOUT_PREFIX)].unique()}
    return [f for f in FAMILY_ORDER if f in have] + sorted(have - set(FAMILY_ORDER))


@dataclasses.dataclass(frozen=True)
class Pair:
    """Aligned score sets of two sides (`baseline` empty for a one-sided set)."""

    variant: dict[str, np.ndarray]
    baseline: dict[str, np.ndarray]
    benchmarks: tuple[str, ...]
    dropped_examples: int = 0
    dropped_benchmarks: tuple[str, ...] = ()
    status: str = "ok"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Relative change of a measure (percent of the baseline's score) with its interval.

    `change`/`low`/`high` are of the raw score; `improvement` flips the sign
    for lower-is-better measures, so a positive improvement always means the
    variant is better.
    """

    measure: Measure
    change: float
    low: float
    high: float
    score: float
    baseline_score: float
    n_benchmarks: int
    n_examples: int
    n_seeds: int
    baseline_seeds: int
    dropped_examples: int
    status: str
    p_value: float = float("nan")  # two-sided, of "no change"
    mde: float = float("nan")  # smallest relative change (%) detected with 80% power at the 5% level
    seed_noise: str = ""  # stats.Change.seed_noise

    @property
    def seed_noise_measured(self) -> bool:
        return self.seed_noise != stats.NOT_MEASURED

    @property
    def improvement(self) -> tuple[float, float, float]:
        if self.measure.higher_is_better:
            return self.change, self.low, self.high
        return -self.change, -self.high, -self.low

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)

    def describe(self) -> str:
        """'2 vs 2 seeds, 3 benchmarks, 600 examples (4 unpaired dropped)'."""
        if self.status != "ok":
            return self.status
        s = f"{self.n_seeds} vs {self.baseline_seeds} seeds, "
        if self.measure.benchmarks and all(b.startswith(HELDOUT_PREFIX) for b in self.measure.benchmarks):
            s += f"{self.n_examples} documents"
        else:
            s += (f"{self.n_benchmarks} benchmark{'s' if self.n_benchmarks != 1 else ''}, "
                  f"{self.n_examples} examples")
        s += f" ({self.dropped_examples} unpaired dropped)" if self.dropped_examples else ""
        return s + ("; seed noise not measured (one seed everywhere)" if not self.seed_noise_measured else "")


def _missing_comparison(measure: Measure, status: str) -> Comparison:
    nan = float("nan")
    return Comparison(measure, nan, nan, nan, nan, nan, 0, 0, 0, 0, 0, status)


class PairedScores:
    """Per-example values of one experiment, indexed for building score sets."""

    def __init__(self, data: ExperimentData):
        self.data = data
        ex = self._examples = data.examples
        self._values: dict[tuple[str, str, str], pd.Series] = {}
        if len(ex):
            for (run, bench, metric), g in ex.groupby(["run", "benchmark", "metric"], sort=False):
                v = pd.Series(g["value"].to_numpy(np.float64), index=g["id"].to_numpy())
                # Duplicate ids (a benchmark scored twice) are averaged, never double-counted.
                self._values[(run, bench, metric)] = v if v.index.is_unique else v.groupby(level=0).mean()
        ev = data.evals
        real = ev[~ev["benchmark"].astype(str).str.startswith("category:")] if len(ev) else ev
        self.category_of: dict[str, str] = (
            dict(zip(real["benchmark"], real["category"])) if len(real) else {})
        prim = real[real["primary"].astype(bool)] if len(real) else real
        self.primary_of: dict[str, str] = dict(zip(prim["benchmark"], prim["metric"])) if len(prim) else {}
        # (run, benchmark, metric) triples that have an evaluation record (per-example or not).
        self._records = set(zip(real["run"], real["benchmark"], real["metric"])) if len(real) else set()
        self._record_value: dict[tuple[str, str, str], float] = (
            {(r, b, m): float(v) for r, b, m, v in zip(real["run"], real["benchmark"], real["metric"],
                                                         real["value"])} if len(real) else {})
        hd = data.heldout
        # Each run's last held-out evaluation per family.
        last = hd.sort_values("step").groupby(["run", "family"])["bpb"].last() if len(hd) else pd.Series()
        self._heldout_bpb: dict[tuple[str, str], float] = {
            (r, HELDOUT_PREFIX + str(f)): float(v) for (r, f), v in last.items()}

    @classmethod
    def of(cls, data: ExperimentData) -> PairedScores:
        """The index of `data`, built once per ExperimentData (cached on it)."""
        cached = getattr(data, "_paired_scores", None)
        if cached is not None and cached.data is data and cached._examples is data.examples:
            return cached
        out = cls(data)
        data._paired_scores = out
        return out

    # -- which benchmarks a measure covers ---------------------------------
    def benchmarks(self, measure: Measure) -> list[str]:
        if measure.category is None:
            return list(measure.benchmarks)
        return sorted(b for b, c in self.category_of.items() if c == measure.category)

    def _metric(self, measure: Measure, bench: str) -> str | None:
        return self.primary_of.get(bench) if measure.metric == "primary" else measure.metric

    def has_record(self, run: str, measure: Measure, bench: str) -> bool:
        """The run measured this benchmark (with or without per-example values)."""
        if bench.startswith(HELDOUT_PREFIX):
            return (run, bench) in self._heldout_bpb or (run, bench, "bpb") in self._values
        m = self._metric(measure, bench)
        return m is not None and ((run, bench, m) in self._records or (run, bench, m) in self._values)

    def values(self, run: str, measure: Measure, bench: str) -> pd.Series | None:
        m = self._metric(measure, bench)
        return None if m is None else self._values.get((run, bench, m))

    # -- score sets ---------------------------------------------------------
    def pair(self, variant_runs: Sequence[str], baseline_runs: Sequence[str], measure: Measure) -> Pair:
        """Aligned score sets of `variant_runs` (its seeds) and `baseline_runs` on `measure`.

        With `baseline_runs` empty, a one-sided set of the variant's runs.
        """
        sides = [list(variant_runs), list(baseline_runs)]
        runs = sides[0] + sides[1]
        if not sides[0]:
            return Pair({}, {}, (), status="missing (no runs)")
        benches = self.benchmarks(measure)
        measured = [b for b in benches if all(self.has_record(r, measure, b) for r in runs)]
        if not measured:
            what = measure.category or ", ".join(measure.benchmarks)
            return Pair({}, {}, (), status=f"missing (no {measure.metric} on {what})")
        sets: list[dict[str, np.ndarray]] = [{}, {}]
        dropped, lost = 0, []
        for b in measured:
            series = [[self.values(r, measure, b) for r in side] for side in sides]
            if any(s is None for side in series for s in side):
                lost.append(b)
                continue
            flat = [s for side in series for s in side]
            common = flat[0].index
            for s in flat[1:]:
                common = common.intersection(s.index)
            dropped += sum(len(s) - len(common) for s in flat)
            if not len(common):
                lost.append(b)
                continue
            for k, side in enumerate(series):
                if side:
                    sets[k][b] = np.stack([s.loc[common].to_numpy(np.float64) for s in side])
        if lost:
            # A subset of the benchmarks would be a different score; say so instead.
            return Pair({}, {}, tuple(measured), dropped, tuple(lost), status=NO_PER_EXAMPLE)
        return Pair(sets[0], sets[1], tuple(measured), dropped, ())

    # -- the experiment's seed noise -----------------------------------------
    def seed_groups(self) -> list[list[str]]:
        """Runs that differ only in their seed: each variant's final stage, a
        run set shared by several variants (code_p0 and text_only) once."""
        ch = self.data.chains
        if not len(ch):
            return []
        seen, out = set(), []
        for _, g in ch.groupby("variant", sort=False):
            runs = list(g[g["stage_index"] == g["stage_index"].max()]["run"])
            key = frozenset(runs)
            if len(runs) >= 2 and key not in seen:
                seen.add(key)
                out.append(runs)
        return out

    def noise(self, measure: Measure) -> stats.SeedNoise:
        """Seed variance of `measure` pooled over the experiment's seed groups (cached)."""
        cache = self.__dict__.setdefault("_noise", {})
        if measure not in cache:
            sets = []
            for runs in self.seed_groups():
                p = self.pair(runs, [], measure)
                if p.status == "ok":
                    sets.append(p.variant)
            cache[measure] = stats.seed_noise(sets)
        return cache[measure]

    def compare(self, variant_runs: Sequence[str], baseline_runs: Sequence[str], measure: Measure,
                level: float = 0.95) -> Comparison:
        """Relative change of the variant's score against the baseline's (t interval, pooled seed noise)."""
        if not baseline_runs:
            return _missing_comparison(measure, "missing (no baseline runs)")
        p = self.pair(variant_runs, baseline_runs, measure)
        if p.status != "ok":
            return _missing_comparison(measure, p.status)
        ch = stats.paired_change(p.variant, p.baseline, kind="relative", level=level, noise=self.noise(measure))
        status = "ok"
        if not math.isfinite(ch.low):
            status = "missing (a score is 0: no relative change)"
        return Comparison(measure, ch.value, ch.low, ch.high, stats.score(p.variant), stats.score(p.baseline),
                          ch.n_benchmarks, ch.n_examples, ch.n_seeds, ch.base_seeds, p.dropped_examples,
                          status, ch.p_value, ch.mde, ch.seed_noise)

    def interval(self, runs: Sequence[str], measure: Measure, level: float = 0.95) -> tuple[float, float, float, str]:
        """(score, low, high, status) of one side's runs; NaN interval when not computable."""
        p = self.pair(runs, [], measure)
        nan = float("nan")
        if p.status != "ok":
            return nan, nan, nan, p.status
        mean, lo, hi = stats.mean_interval(p.variant, level=level, noise=self.noise(measure))
        return mean, lo, hi, "ok"

    def per_seed(self, runs: Sequence[str], measure: Measure, benches: Sequence[str]) -> np.ndarray:
        """Each run's score on `benches` from its evaluation records (mean over benchmarks).

        Uses the records' means (no per-example values needed): for seed
        standard deviations and signal-to-noise. Held-out families use the
        run's last held-out evaluation.
        """
        out = []
        for r in runs:
            vals = [self.record_value(r, measure, b) for b in benches]
            out.append(float(np.mean(vals)) if vals and all(np.isfinite(vals)) else np.nan)
        return np.array(out, dtype=np.float64)

    def record_value(self, run: str, measure: Measure, bench: str) -> float:
        """A run's score on one benchmark from its records (NaN if it has none)."""
        if bench.startswith(HELDOUT_PREFIX):
            v = self._heldout_bpb.get((run, bench))
            m = "bpb"
        else:
            m = self._metric(measure, bench)
            v = self._record_value.get((run, bench, m)) if m else None
        if v is None:
            ex = self._values.get((run, bench, m)) if m else None
            v = float(ex.mean()) if ex is not None else float("nan")
        return v

def final_runs(data: ExperimentData, variant: str) -> list[str]:
    """The seed runs of a variant's last stage ([] if the variant is absent)."""
    ch = data.chains
    if not len(ch):
        return []
    v = ch[ch["variant"] == variant]
    if not len(v):
        return []
    return list(v[v["stage_index"] == v["stage_index"].max()]["run"])


def stage_runs(data: ExperimentData, variant: str, stage_index: int) -> list[str]:
    ch = data.chains
    if not len(ch):
        return []
    return list(ch[(ch["variant"] == variant) & (ch["stage_index"] == stage_index)]["run"])
