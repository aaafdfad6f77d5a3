"""The study's tables from an ExperimentData.

  benchmark_scores   tidy: variant, stage, run, seed, benchmark, category, value
                     (each benchmark's primary metric).
  category_scores    tidy: per variant, stage and category, the mean over
                     benchmarks (and seeds) with a 95% interval from the
                     t interval over per-example values (stats.py)
                     (codemix/analysis/paired.py). Runs without evaluation
                     appear with status "missing" and NaN scores; runs
                     without per-example values keep their score but get no
                     interval (column `interval` says why).
  score_table        category_scores as variant x stage rows, category columns.
  study_table        the study's Table 2 layout: reasoning, knowledge, NL
                     average, code, total average (primary metrics).
  relative_change_table
                     per variant and category: percent change of the final
                     stage against a baseline variant, t 95%
                     interval over examples (paired by id) and seeds.
  signal_noise_table per metric: seed standard deviation, spread of the
                     variants' means, and their ratio (signal-to-noise).
  heldout_scores     per variant (final stage) and held-out family: bits per
                     byte with its interval over documents and seeds.
  shares_table       per run and source: requested vs realized token share.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from codemix.analysis import stats
from codemix.analysis.load import ExperimentData
from codemix.analysis.paired import (
    Measure,
    PairedScores,
    continuous,
    families,
    final_runs,
    heldout,
    primary,
)

CATEGORY_ORDER = ("reasoning", "knowledge", "code", "generative")
T_INTERVAL = "t interval (examples paired, seed noise pooled)"


def _categories(cats) -> list[str]:
    cats = {c for c in cats if isinstance(c, str)}
    return [c for c in CATEGORY_ORDER if c in cats] + sorted(cats - set(CATEGORY_ORDER))


def benchmark_scores(data: ExperimentData) -> pd.DataFrame:
    """Primary-metric value of every benchmark of every run in every variant's chain."""
    cols = ["variant", "stage_index", "stage", "run", "seed", "step", "benchmark", "category", "metric", "value"]
    ev = data.evals
    if not len(ev) or not len(data.chains):
        return pd.DataFrame(columns=cols)
    prim = ev[ev["primary"] & ~ev["benchmark"].astype(str).str.startswith("category:")]
    out = data.chains.merge(prim[["run", "step", "benchmark", "category", "metric", "value"]], on="run")
    return out[cols].reset_index(drop=True)


def _grid(scores: pd.DataFrame) -> pd.DataFrame:
    """(seed runs x benchmarks) of values, keeping benchmarks every seed has."""
    return scores.groupby(["run", "benchmark"])["value"].mean().unstack("benchmark").dropna(axis=1)


def category_scores(data: ExperimentData, paired: PairedScores | None = None) -> pd.DataFrame:
    """Per variant, stage and category: score, 95% interval, counts, status.

    score is the mean over the category's benchmarks (primary metrics) and
    over seeds. The interval resamples each benchmark's examples and the
    seeds (`PairedScores.interval`); `interval` is T_INTERVAL or the
    reason there is none ("missing (no per-example values)").
    """
    cols = ["variant", "stage_index", "stage", "category", "score", "ci_low", "ci_high",
            "n_benchmarks", "n_seeds", "runs", "status", "interval"]
    scores = benchmark_scores(data)
    cats = _categories(scores["category"]) if len(scores) else []
    paired = paired or PairedScores.of(data)
    rows = []
    if not len(data.chains):
        return pd.DataFrame(columns=cols)
    nan = np.nan
    for (variant, idx), chain in data.chains.groupby(["variant", "stage_index"], sort=False):
        stage = chain["stage"].iloc[0]
        runs = list(chain["run"])
        have = scores[(scores["variant"] == variant) & (scores["stage_index"] == idx)]
        evaluated = set(have["run"])
        status = "ok" if evaluated == set(runs) else ("missing" if not evaluated else
                                                      f"partial ({len(evaluated)}/{len(runs)} seeds)")
        base = {"variant": variant, "stage_index": idx, "stage": stage, "runs": runs}
        for c in cats:
            sub = have[have["category"] == c]
            if not len(sub):
                rows.append({**base, "category": c, "score": nan, "ci_low": nan, "ci_high": nan,
                             "n_benchmarks": 0, "n_seeds": 0, "status": "missing", "interval": "missing"})
                continue
            grid = _grid(sub)
            _, lo, hi, why = paired.interval(list(grid.index), primary(c))
            rows.append({**base, "category": c, "score": float(grid.to_numpy().mean()), "ci_low": lo,
                         "ci_high": hi, "n_benchmarks": grid.shape[1], "n_seeds": grid.shape[0],
                         "status": status, "interval": T_INTERVAL if why == "ok" else why})
        if not cats:
            rows.append({**base, "category": None, "score": nan, "ci_low": nan, "ci_high": nan,
                         "n_benchmarks": 0, "n_seeds": 0, "status": "missing", "interval": "missing"})
    return pd.DataFrame(rows, columns=cols)


def score_table(data: ExperimentData, scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """variant x stage rows, one column per category (NaN = missing), plus status."""
    s = category_scores(data) if scores is None else scores
    if not len(s):
        return pd.DataFrame()
    keys = ["variant", "stage_index", "stage"]
    status = s.groupby(keys, sort=False)["status"].agg(
        lambda x: "ok" if (x == "ok").all() else ("missing" if (x == "missing").all() else "partial"))
    wide = s.dropna(subset=["category"]).pivot_table(index=keys, columns="category", values="score",
                                                     aggfunc="first", dropna=False, sort=False)
    wide = wide.reindex(status.index)
    wide = wide[[c for c in _categories(wide.columns)]] if len(wide.columns) else wide
    wide["status"] = status
    wide.columns.name = None
    return wide


def study_table(data: ExperimentData, scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """The study's Table 2 layout per variant and stage (primary metrics).

    Columns: reasoning, knowledge, "NL avg" (mean of reasoning and
    knowledge), code, "total avg" (mean of reasoning, knowledge and code),
    status. An average is NaN ("missing") when one of its parts is.
    """
    wide = score_table(data, scores)
    if not len(wide):
        return wide
    out = pd.DataFrame(index=wide.index)
    for c in ("reasoning", "knowledge"):
        out[c] = wide[c] if c in wide.columns else np.nan
    out["NL avg"] = out[["reasoning", "knowledge"]].mean(axis=1, skipna=False)
    out["code"] = wide["code"] if "code" in wide.columns else np.nan
    out["total avg"] = out[["reasoning", "knowledge", "code"]].mean(axis=1, skipna=False)
    out["status"] = wide["status"]
    return out


def relative_change_table(data: ExperimentData, baseline: str = "text_only",
                          paired: PairedScores | None = None) -> pd.DataFrame:
    """Percent change of every variant's final stage against `baseline`'s, per category (primary metrics).

    Benchmarks are paired: only benchmarks both have enter the comparison
    (n_benchmarks says how many), and within them only examples both have.
    Without per-example values the change is computed from the benchmark
    means and `interval` says "missing (no per-example values)".
    `attrs["note"]` explains an empty table.
    """
    cols = ["variant", "category", "change", "ci_low", "ci_high", "score", "baseline_score",
            "n_benchmarks", "n_examples", "n_seeds", "baseline_seeds", "status", "interval"]
    scores = benchmark_scores(data)
    final = data.final_runs()
    out = pd.DataFrame(columns=cols)
    if baseline not in set(data.chains.get("variant", [])):
        out.attrs["note"] = f"baseline variant {baseline!r} is not part of this experiment"
        return out
    fs = scores.merge(final[["variant", "stage_index"]], on=["variant", "stage_index"])
    base = fs[fs["variant"] == baseline]
    if not len(base):
        out.attrs["note"] = f"baseline variant {baseline!r} has no evaluated final run (missing)"
        return out
    paired = paired or PairedScores.of(data)
    cats = _categories(fs["category"])
    rows = []
    for variant in data.variants:
        if variant == baseline:
            continue
        v = fs[fs["variant"] == variant]
        for c in cats:
            vb, bb = v[v["category"] == c], base[base["category"] == c]
            row = {"variant": variant, "category": c}
            if not len(vb) or not len(bb):
                rows.append({**row, "status": "missing" if not len(vb) else "baseline missing"})
                continue
            vg, bg = _grid(vb), _grid(bb)
            common = [b for b in bg.columns if b in vg.columns]
            if not common:
                rows.append({**row, "status": "no shared benchmarks"})
                continue
            m = Measure(f"{c} primary", "primary", None, tuple(common))
            ch = paired.compare(list(vg.index), list(bg.index), m)
            if ch.status == "ok":
                rows.append({**row, "change": ch.change, "ci_low": ch.low, "ci_high": ch.high, "score": ch.score,
                             "baseline_score": ch.baseline_score, "n_benchmarks": ch.n_benchmarks,
                             "n_examples": ch.n_examples, "n_seeds": ch.n_seeds,
                             "baseline_seeds": ch.baseline_seeds, "status": "ok", "interval": T_INTERVAL})
                continue
            sv, sb = float(vg[common].to_numpy().mean()), float(bg[common].to_numpy().mean())
            rows.append({**row, "change": stats.relative_change(sv, sb), "score": sv, "baseline_score": sb,
                         "n_benchmarks": len(common), "n_seeds": len(vg), "baseline_seeds": len(bg),
                         "status": "ok", "interval": ch.status})
    out = pd.DataFrame(rows, columns=cols)
    out.attrs["baseline"] = baseline
    return out


def _final_by_variant(data: ExperimentData) -> dict[str, list[str]]:
    return {v: r for v in data.variants if (r := final_runs(data, v))}


def signal_noise_table(data: ExperimentData, paired: PairedScores | None = None) -> pd.DataFrame:
    """Per metric: seed standard deviation and signal-to-noise over the variants' final stages.

    Metrics: each category's primary and continuous metric (mean over the
    benchmarks every compared run has) and each held-out family's bpb. A
    variant enters when all its final seed runs measured the metric.
    seed_std is the mean over variants with >= 2 seeds of their seed
    standard deviation (`stats.seed_std`); spread is max - min of the
    variants' seed means; snr is `stats.signal_to_noise` (spread over the
    pooled seed standard deviation). NaN where no variant has 2 seeds.
    """
    cols = ["metric", "better", "variants", "seeds", "seed_std", "spread", "snr"]
    paired = paired or PairedScores.of(data)
    finals = _final_by_variant(data)
    measures: list[Measure] = []
    for c in _categories(set(paired.category_of.values())):
        measures += [primary(c), continuous(c)] if c in ("reasoning", "knowledge", "code") else [primary(c)]
    measures += [heldout(f) for f in families(data)]
    rows = []
    for m in measures:
        benches = paired.benchmarks(m)
        take = {}
        for v, runs in finals.items():
            have = [b for b in benches if all(paired.has_record(r, m, b) for r in runs)]
            if have:
                take[v] = (runs, set(have))
        if not take:
            continue
        common = sorted(set.intersection(*(h for _, h in take.values())))
        if not common:
            continue
        by_variant = {v: paired.per_seed(runs, m, common) for v, (runs, _) in take.items()}
        by_variant = {v: x[np.isfinite(x)] for v, x in by_variant.items() if np.isfinite(x).any()}
        if not by_variant:
            continue
        stds = [stats.seed_std(x) for x in by_variant.values() if x.size >= 2]
        means = [float(x.mean()) for x in by_variant.values()]
        sizes = [x.size for x in by_variant.values()]
        rows.append({"metric": f"{m.label} ({len(common)} benchmark{'s' if len(common) > 1 else ''})"
                     if m.category else m.label,
                     "better": "higher" if m.higher_is_better else "lower", "variants": len(by_variant),
                     "seeds": f"{min(sizes)}" if min(sizes) == max(sizes) else f"{min(sizes)}-{max(sizes)}",
                     "seed_std": float(np.mean(stds)) if stds else np.nan,
                     "spread": max(means) - min(means) if len(means) > 1 else np.nan,
                     "snr": stats.signal_to_noise(by_variant)})
    return pd.DataFrame(rows, columns=cols)


def heldout_scores(data: ExperimentData, paired: PairedScores | None = None) -> pd.DataFrame:
    """Per variant (final stage) and family: bpb of the last held-out evaluation, interval, seed std."""
    cols = ["variant", "family", "bpb", "ci_low", "ci_high", "n_seeds", "seed_std", "interval"]
    paired = paired or PairedScores.of(data)
    rows = []
    for v, runs in _final_by_variant(data).items():
        for fam in families(data):
            m = heldout(fam)
            per_seed = paired.per_seed(runs, m, m.benchmarks)
            per_seed = per_seed[np.isfinite(per_seed)]
            if not per_seed.size:
                continue
            mean, lo, hi, why = paired.interval(runs, m)
            rows.append({"variant": v, "family": fam, "bpb": mean if why == "ok" else float(per_seed.mean()),
                         "ci_low": lo, "ci_high": hi, "n_seeds": int(per_seed.size),
                         "seed_std": stats.seed_std(per_seed),
                         "interval": T_INTERVAL if why == "ok" else "missing (no per-document values)"})
    return pd.DataFrame(rows, columns=cols)


def shares_table(data: ExperimentData) -> pd.DataFrame:
    """Per run and source: requested and realized token shares, tokens seen."""
    s = data.shares
    if not len(s):
        return s
    return s.merge(data.runs[["run", "stage", "mixture"]], on="run", how="left")[
        ["run", "stage", "mixture", "source", "requested", "realized", "tokens"]]
