"""Mixture laws on an experiment: which runs, which targets, proposals and their check.

Runs (`law_runs`): the runs that start from scratch (no parent stage) and
finished, at one token budget (a law over mixtures must not mix budgets): the
budget with the most distinct mixtures, or the runs of the variants named.
Their shares are the requested token shares per task from run_info.json (the
design; realized shares agree to within a batch), one column per task, 0 where
a run does not use it. Runs with the same shares are the seeds of one point.

Target names (`target_values`), one value per run:

  val/<family>/bpb, val/<family>/loss
                        held-out bits per byte / loss of a family at the
                        run's last held-out evaluation (heldout/step_<N>.json;
                        else the last metrics.jsonl row that logged it);
  <benchmark>/<metric>  an evaluation record: arc_easy/prob_correct,
                        humaneval/pass@1, triviaqa/bpb;
  <category>/<metric>   mean of <metric> over the category's benchmarks that
                        every fitted run has: reasoning/prob_correct,
                        knowledge/bpb;
  any other name        the last value of that metrics.jsonl key (loss/text).

Proposals (`write_proposal`): a mixture gin file that `experiment run` trains
by name when it lies in gin/mixtures/ (codemix/data/mixtures.py finds
gin/mixtures/<name>.gin), and next to it <name>.law.json with the law's
prediction (targets with intervals, objective, form, the experiment fitted).
Once a run of that mixture is in an experiment, `predicted_vs_measured`
reads the sidecar back (from gin/mixtures/ of the checkout, of the current
directory, or the experiment directory) and sets the measurement (with its
interval) beside it.
"""
from __future__ import annotations

import datetime
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from etils import epath
from scipy import stats as sps

from codemix.analysis import mixture_law as ml
from codemix.analysis.load import ExperimentData
from codemix.analysis.paired import Measure, PairedScores, heldout

log = logging.getLogger(__name__)

# Where codemix/data/mixtures.py looks for mixtures by name (same expression as
# its MIXTURE_DIR, without importing SeqIO/TensorFlow).
MIXTURE_DIR = Path(__file__).resolve().parents[1] / "gin" / "mixtures"
SIDECAR = ".law.json"
_HELDOUT = re.compile(r"^val/([^/]+)/(bpb|loss)$")
_NAME = re.compile(r"^[A-Za-z_]\w*$")


def law_runs(data: ExperimentData, variants: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per fitted run: run, mixture, seed, token_budget, then one share column per task."""
    runs = data.runs
    if variants:
        names = set(data.chains[data.chains["variant"].isin(variants)]["run"])
        unknown = sorted(set(variants) - set(data.chains["variant"]))
        if unknown:
            raise ml.LawError(f"unknown variant(s) {unknown}; the experiment has {data.variants}.")
        runs = runs[runs["run"].isin(names)]
    runs = runs[runs["parent"].isna() & (runs["status"] == "finished")]
    if not len(runs) or not len(data.shares):
        raise ml.LawError("no finished from-scratch run with logged shares to fit a law on.")
    wide = data.shares.pivot_table(index="run", columns="source", values="requested", aggfunc="first").fillna(0.0)
    runs = runs[runs["run"].isin(wide.index)]
    if not variants and runs["token_budget"].nunique() > 1:
        points = {b: len(np.unique(np.round(wide.loc[g["run"]].to_numpy(float), 6), axis=0))
                  for b, g in runs.groupby("token_budget")}
        budget = max(points, key=lambda b: (points[b], b))
        dropped = runs[runs["token_budget"] != budget]["run"].tolist()
        log.info("mixture law on the %d-token runs (%d mixtures); left out at other budgets: %s",
                 budget, points[budget], dropped)
        runs = runs[runs["token_budget"] == budget]
    wide = wide.loc[runs["run"]]
    wide = wide.loc[:, wide.sum(axis=0) > 0]
    out = runs[["run", "mixture", "seed", "token_budget"]].reset_index(drop=True)
    return pd.concat([out, wide.reset_index(drop=True)], axis=1)


def share_columns(runs: pd.DataFrame) -> list[str]:
    return [c for c in runs.columns if c not in ("run", "mixture", "seed", "token_budget")]


def available_targets(data: ExperimentData) -> list[str]:
    out = [f"val/{f}/{m}" for f in sorted(set(data.heldout["family"])) for m in ("bpb", "loss")] \
        if len(data.heldout) else []
    ev = data.evals[~data.evals["benchmark"].astype(str).str.startswith("category:")] if len(data.evals) else None
    if ev is not None and len(ev):
        out += sorted({f"{b}/{m}" for b, m in zip(ev["benchmark"], ev["metric"])})
        out += sorted({f"{c}/{m}" for c, m in zip(ev["category"], ev["metric"]) if isinstance(c, str)})
    return out


def _last_metric(data: ExperimentData, runs: Sequence[str], key: str) -> np.ndarray:
    m = data.metrics
    if not len(m) or key not in m.columns:
        return np.full(len(runs), np.nan)
    last = m.dropna(subset=[key]).sort_values("step").groupby("run")[key].last()
    return np.array([float(last.get(r, np.nan)) for r in runs])


def target_values(data: ExperimentData, runs: Sequence[str], target: str) -> np.ndarray:
    """One value of `target` per run (see the module docstring for the names); NaN where a run lacks it."""
    vals = _values(data, list(runs), target)
    if not np.isfinite(vals).any():
        raise ml.LawError(f"no run carries target {target!r}; targets here: {available_targets(data)} "
                          f"(or any metrics.jsonl key).")
    if not np.isfinite(vals).all():
        log.warning("%s: %d of %d runs lack it and are left out", target, int((~np.isfinite(vals)).sum()), len(vals))
    return vals


def _values(data: ExperimentData, runs: list[str], target: str) -> np.ndarray:
    if m := _HELDOUT.match(target):
        fam, metric = m.groups()
        h = data.heldout[data.heldout["family"] == fam] if len(data.heldout) else data.heldout
        if len(h):
            last = h.sort_values("step").groupby("run")[metric].last()
            vals = np.array([float(last.get(r, np.nan)) for r in runs])
        else:
            vals = _last_metric(data, runs, target)
        return np.where(np.isfinite(vals), vals, _last_metric(data, runs, target))
    ev = data.evals[~data.evals["benchmark"].astype(str).str.startswith("category:")] if len(data.evals) else None
    if "/" in target and ev is not None and len(ev):
        head, metric = target.rsplit("/", 1)
        ev = ev[(ev["metric"] == metric) & ev["run"].isin(runs)]
        ev = ev.sort_values("step") if "step" in ev.columns else ev
        if head in set(ev["benchmark"]):
            last = ev[ev["benchmark"] == head].groupby("run")["value"].last()
            return np.array([float(last.get(r, np.nan)) for r in runs])
        if head in set(ev["category"]):
            grid = ev[ev["category"] == head].groupby(["run", "benchmark"])["value"].last().unstack("benchmark")
            grid = grid.reindex(runs).dropna(axis=1)
            if not grid.shape[1]:
                raise ml.LawError(f"target {target!r}: no {head} benchmark has {metric} for every run.")
            return grid.mean(axis=1).to_numpy(np.float64)
    return _last_metric(data, runs, target)


def default_sense(target: str) -> str:
    return "min" if re.search(r"(bpb|loss|perplexity)$", target) else "max"


def fit_experiment(data: ExperimentData, targets: Sequence[str], form: str = "exp", resamples: int = 500,
                   variants: Sequence[str] | None = None) -> tuple[dict[str, ml.Law], pd.DataFrame]:
    """({target: Law}, the fitted runs) on `law_runs(data, variants)`."""
    runs = law_runs(data, variants)
    cols = share_columns(runs)
    laws = {}
    for t in targets:
        y = target_values(data, runs["run"], t)
        laws[t] = ml.fit(runs[cols].to_numpy(np.float64), y, form, seeds=runs["seed"].to_numpy(),
                         resamples=resamples, families=cols, target=t)
    return laws, runs


def _measure(target: str) -> Measure | None:
    if m := _HELDOUT.match(target):
        return heldout(m.group(1)) if m.group(2) == "bpb" else None
    if "/" not in target:
        return None
    head, metric = target.rsplit("/", 1)
    return Measure(target, metric, head, ())


def measured(data: ExperimentData, runs: Sequence[str], target: str) -> tuple[float, float, float, str]:
    """(mean, low, high, how) of `target` over `runs` (seeds of one mixture).

    The interval is the bootstrap over examples/documents and seeds
    (PairedScores) where per-example values exist, else a t interval over the
    seeds (none with one seed).
    """
    vals = target_values(data, runs, target)
    mean = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan
    measure = _measure(target)
    if measure is not None and measure.category is not None:
        paired = PairedScores.of(data)
        if measure.category not in set(paired.category_of.values()):  # a benchmark, not a category
            measure = Measure(target, measure.metric, None, (measure.category,))
    if measure is not None:
        _, lo, hi, why = PairedScores.of(data).interval(list(runs), measure)
        if why == "ok":
            return mean, lo, hi, "examples and seeds"
    v = vals[np.isfinite(vals)]
    if len(v) < 2:
        return mean, math.nan, math.nan, "one seed"
    half = float(sps.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half, "t over seeds"


def point_table(data: ExperimentData, law: ml.Law, runs: pd.DataFrame) -> pd.DataFrame:
    """Per mixture point of the fit: its shares, measured mean with interval, the law's prediction and band."""
    cols = share_columns(runs)
    rows = []
    for key, g in runs.groupby(cols, sort=True):
        shares = np.atleast_1d(np.asarray(key, dtype=np.float64))
        mean, lo, hi, how = measured(data, g["run"].tolist(), law.target)
        plo, phi = law.interval(shares[None])
        rows.append({**dict(zip(cols, shares)), "mixture": ", ".join(sorted(set(g["mixture"].astype(str)))),
                     "n_seeds": len(g), "measured": mean, "low": lo, "high": hi, "interval": how,
                     "predicted": float(law.predict(shares[None])[0]), "pred_low": float(plo[0]),
                     "pred_high": float(phi[0])})
    return pd.DataFrame(rows)


def _rounded(shares: Mapping[str, float], digits: int = 4) -> dict[str, float]:
    """Shares rounded to `digits`, zeros dropped, the rounding error put on the largest: sums to 1."""
    r = {f: round(float(s), digits) for f, s in shares.items() if round(float(s), digits) > 0}
    big = max(r, key=r.get)
    r[big] = round(r[big] + 1.0 - sum(r.values()), digits + 2)
    return r


def write_proposal(path: str | Path, shares: Mapping[str, float], laws: Mapping[str, ml.Law], objective: str,
                   experiment: str, kind: str = "optimum", optimum=None) -> tuple[Path, Path]:
    """Write mixture gin `path` (its stem is the mixture name) and its prediction sidecar; returns both."""
    path = epath.Path(path)  # a gs:// folder too
    name = path.stem
    if path.suffix != ".gin" or not _NAME.match(name):
        raise ml.LawError(f"{path}: write a .gin file whose name is an identifier (letters, digits, _).")
    r = _rounded(shares)
    vec = np.array([[r.get(f, 0.0) for f in next(iter(laws.values())).families]])
    pred = {}
    for t, law in laws.items():
        lo, hi = law.interval(vec)
        pred[t] = {"predicted": float(law.predict(vec)[0]), "low": float(lo[0]), "high": float(hi[0])}
    first = next(iter(laws.values()))
    side = {"mixture": name, "kind": kind, "shares": r, "objective": objective, "form": first.form,
            "experiment": experiment, "fitted_runs": first.n_runs, "fitted_points": first.n_points,
            "loo": {t: law.loo for t, law in laws.items()}, "predicted": pred,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    if optimum is not None:
        side["optimum_interval"] = {f: [float(a), float(b)] for f, a, b in
                                    zip(optimum.families, optimum.shares_low, optimum.shares_high)}
    what = "the law's predicted optimum" if kind == "optimum" else "an exploratory point (bootstrap laws disagree most)"
    lines = [f"# {name}: mixture proposed by `codemix law propose`: {what}.",
             (f"# Objective: {objective}. Law: {first.form}, fitted on {first.n_runs} runs "
              f"({first.n_points} mixtures) of {experiment}."),
             *(f"# Predicted {t}: {p['predicted']:.4f} [{p['low']:.4f}, {p['high']:.4f}] (95% bootstrap band)"
               for t, p in pred.items()),
             f"# Prediction and law details: {name}{SIDECAR} next to this file.",
             f"# Use: a stage (\"init\", \"{name}\", TOKENS) in an experiment gin; found by name in gin/mixtures/.",
             "", f'{name}/mixture_spec.description = "proposed by codemix law propose ({kind}): {objective}"',
             f"{name}/mixture_spec.shares = {json.dumps(r)}", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    side_path = path.with_name(name + SIDECAR)
    side_path.write_text(json.dumps(side, indent=2))
    if path.resolve().parent != MIXTURE_DIR.resolve():
        log.warning("%s is not in %s: `experiment run` finds mixtures by name there; move it there or "
                    "include it from the experiment gin.", path, MIXTURE_DIR)
    return path, side_path


def find_proposals(data: ExperimentData, dirs: Sequence[Path] | None = None) -> dict[str, dict]:
    """{mixture: sidecar} for every mixture of the experiment's runs that has a prediction sidecar."""
    dirs = list(dirs) if dirs is not None else [MIXTURE_DIR, Path.cwd() / "gin" / "mixtures", data.root]
    out = {}
    for mix in sorted(set(data.runs["mixture"].dropna().astype(str))):
        for d in dirs:
            p = epath.Path(d) / f"{mix}{SIDECAR}"
            if p.exists():
                out[mix] = json.loads(p.read_text())
                break
    return out


def predicted_vs_measured(data: ExperimentData, dirs: Sequence[Path] | None = None) -> pd.DataFrame:
    """Per trained proposal and target: the sidecar's prediction beside the measurement and its interval."""
    cols = ["mixture", "kind", "target", "predicted", "pred_low", "pred_high", "measured", "low", "high",
            "n_seeds", "interval", "inside", "shares"]
    rows = []
    runs = data.runs[(data.runs["status"] == "finished") & data.runs["parent"].isna()]
    for mix, side in find_proposals(data, dirs).items():
        r = runs[runs["mixture"] == mix]["run"].tolist()
        if not r:
            continue
        for t, p in side["predicted"].items():
            try:
                mean, lo, hi, how = measured(data, r, t)
            except ml.LawError:
                continue
            rows.append({"mixture": mix, "kind": side.get("kind"), "target": t, "predicted": p["predicted"],
                         "pred_low": p["low"], "pred_high": p["high"], "measured": mean, "low": lo, "high": hi,
                         "n_seeds": len(r), "interval": how,
                         "inside": bool(p["low"] <= mean <= p["high"]) if math.isfinite(mean) else None,
                         "shares": side["shares"]})
    return pd.DataFrame(rows, columns=cols)


def report_targets(data: ExperimentData, runs: pd.DataFrame) -> list[str]:
    """The report's targets: held-out bpb of each family the runs vary, and reasoning prob_correct."""
    have = set(data.heldout["family"]) if len(data.heldout) else set()
    out = [f"val/{f}/bpb" for f in share_columns(runs) if f in have]
    ev = data.evals
    if len(ev) and ((ev["category"] == "reasoning") & (ev["metric"] == "prob_correct")).any():
        out.append("reasoning/prob_correct")
    return out


def report_laws(data: ExperimentData, resamples: int = 400) -> dict:
    """What the report shows, fitted once per ExperimentData (cached on it).

    {"runs": fitted runs, "laws": {target: exp Law}, "loo": {target: {form: RMSE}},
     "optimum": {target: Optimum of its default sense}, "points": {target: point_table},
     "errors": {target: why it has no law}, "proposals": predicted_vs_measured}; or
    {"error": why no law at all}.
    """
    cached = getattr(data, "_report_laws", None)
    if cached is not None:
        return cached
    from codemix.analysis import mixture_optimum as mo

    try:
        runs = law_runs(data)
    except ml.LawError as e:
        out: dict = {"error": str(e)}
    else:
        out = {"runs": runs, "laws": {}, "loo": {}, "optimum": {}, "points": {}, "errors": {}}
        cols = share_columns(runs)
        for t in report_targets(data, runs):
            try:
                y = target_values(data, runs["run"], t)
                fits = {}
                for form in ("exp", "linear"):
                    try:
                        fits[form] = ml.fit(runs[cols].to_numpy(np.float64), y, form, resamples=resamples if
                                            form == "exp" else 0, families=cols, target=t)
                    except ml.LawError as e:
                        fits[form] = e
                if isinstance(fits["exp"], ml.LawError):
                    raise fits["exp"]
                law = out["laws"][t] = fits["exp"]
                out["loo"][t] = {f: (v.loo if isinstance(v, ml.Law) else math.nan) for f, v in fits.items()}
                out["optimum"][t] = mo.optimum({t: law}, mo.Objective(default_sense(t), {t: 1.0}))
                out["points"][t] = point_table(data, law, runs)
            except ml.LawError as e:
                out["errors"][t] = str(e)
        if not out["laws"] and not out["errors"]:
            out["error"] = "no target to fit (no held-out evaluation, no reasoning prob_correct)"
    try:
        out["proposals"] = predicted_vs_measured(data)
    except Exception as e:  # noqa: BLE001 - a broken sidecar must not hide the law
        log.warning("predicted vs measured failed: %s", e)
        out["proposals"] = pd.DataFrame()
    data._report_laws = out
    return out
