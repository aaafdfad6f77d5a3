"""The study's tables from an ExperimentData.

  benchmark_scores   tidy: variant, stage, run, seed, benchmark, category, value
                     (each benchmark's primary metric).
  category_scores    tidy: per variant, stage and category, the mean over
                     benchmarks (and seeds) with a 95% interval; runs without
                     evaluation appear with status "missing" and NaN scores.
  score_table        category_scores as variant x stage rows, category columns.
  relative_change_table
                     per variant and category: percent change of the final
                     stage against a baseline variant, bootstrap 95% interval
                     over benchmarks and seeds (codemix/analysis/stats.py).
  shares_table       per run and source: requested vs realized token share.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from codemix.analysis.load import ExperimentData
from codemix.analysis.stats import bootstrap_mean_interval, bootstrap_relative_change

CATEGORY_ORDER = ("reasoning", "knowledge", "code", "generative")


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


def _category_record_ci(data: ExperimentData) -> dict[tuple[str, str], tuple[float, float]]:
    ev = data.evals
    if not len(ev):
        return {}
    cat = ev[ev["benchmark"].astype(str).str.startswith("category:")]
    return {(r.run, r.category): (r.ci_low, r.ci_high) for r in cat.itertuples()}


def category_scores(data: ExperimentData, resamples: int = 2000) -> pd.DataFrame:
    """Per variant, stage and category: score, 95% interval, counts, status.

    score is the mean over the category's benchmarks (primary metrics) and
    over seeds. The interval: with one seed, the evaluation's own interval of
    the category mean (bootstrap over examples); with several seeds, a
    bootstrap over seeds and benchmarks.
    """
    cols = ["variant", "stage_index", "stage", "category", "score", "ci_low", "ci_high",
            "n_benchmarks", "n_seeds", "runs", "status"]
    scores = benchmark_scores(data)
    cats = _categories(scores["category"]) if len(scores) else []
    record_ci = _category_record_ci(data)
    rows = []
    if not len(data.chains):
        return pd.DataFrame(columns=cols)
    for (variant, idx), chain in data.chains.groupby(["variant", "stage_index"], sort=False):
        stage = chain["stage"].iloc[0]
        runs = list(chain["run"])
        have = scores[(scores["variant"] == variant) & (scores["stage_index"] == idx)]
        evaluated = set(have["run"])
        status = "ok" if evaluated == set(runs) else ("missing" if not evaluated else
                                                      f"partial ({len(evaluated)}/{len(runs)} seeds)")
        for c in cats:
            sub = have[have["category"] == c]
            if not len(sub):
                rows.append({"variant": variant, "stage_index": idx, "stage": stage, "category": c,
                             "score": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_benchmarks": 0,
                             "n_seeds": 0, "runs": runs, "status": "missing"})
                continue
            grid = _grid(sub)
            if grid.shape[0] == 1:
                score = float(grid.to_numpy().mean())
                lo, hi = record_ci.get((grid.index[0], c), (np.nan, np.nan))
            else:
                score, lo, hi = bootstrap_mean_interval(grid.to_numpy(), resamples)
            rows.append({"variant": variant, "stage_index": idx, "stage": stage, "category": c,
                         "score": score, "ci_low": lo, "ci_high": hi, "n_benchmarks": grid.shape[1],
                         "n_seeds": grid.shape[0], "runs": runs, "status": status})
        if not cats:
            rows.append({"variant": variant, "stage_index": idx, "stage": stage, "category": None,
                         "score": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_benchmarks": 0,
                         "n_seeds": 0, "runs": runs, "status": "missing"})
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


def relative_change_table(data: ExperimentData, baseline: str = "text_only",
                          resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Percent change of every variant's final stage against `baseline`'s, per category.

    Benchmarks are paired: only benchmarks both have enter the comparison
    (n_benchmarks says how many). `attrs["note"]` explains an empty table.
    """
    cols = ["variant", "category", "change", "ci_low", "ci_high", "score", "baseline_score",
            "n_benchmarks", "n_seeds", "baseline_seeds", "status"]
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
            ch = bootstrap_relative_change(vg[common].to_numpy(), bg[common].to_numpy(), resamples, seed=seed)
            rows.append({**row, "change": ch.value, "ci_low": ch.low, "ci_high": ch.high,
                         "score": float(vg[common].to_numpy().mean()),
                         "baseline_score": float(bg[common].to_numpy().mean()),
                         "n_benchmarks": ch.n_benchmarks, "n_seeds": ch.n_seeds,
                         "baseline_seeds": ch.base_seeds, "status": "ok"})
    out = pd.DataFrame(rows, columns=cols)
    out.attrs["baseline"] = baseline
    return out


def shares_table(data: ExperimentData) -> pd.DataFrame:
    """Per run and source: requested and realized token shares, tokens seen."""
    s = data.shares
    if not len(s):
        return s
    return s.merge(data.runs[["run", "stage", "mixture"]], on="run", how="left")[
        ["run", "stage", "mixture", "source", "requested", "realized", "tokens"]]
