"""A ladder experiment's runs -> laws across scale, decision accuracy, and the report section.

Runs (`ladder_runs`): every planned from-scratch run with its parameter count
N (run_info.json's total), token budget D, mixture, seed, status and requested
shares. A *rung* is one (N, D); rungs are ordered by compute 6ND and the top
rung (the most compute) is the reference of decision accuracy. Runs that did
not finish stay in the table with their status: a rung with none of its runs
finished is shown as missing, and a mixture missing at a rung is named, never
dropped without a word.

The laws (`fit_scale`): per target, Shukor et al.'s additive or joint law
(codemix/analysis/scale_law.py) over every finished from-scratch run.

Decision accuracy (`decision_table`): scores per (rung, mixture) from
per-document held-out values (examples of benchmark "heldout:<family>") or
per-example benchmark values, so the bootstrap redraws documents and seeds;
where a run lacks per-example values, one value per run (seed noise only,
said in the table's note). The back-test refits the law without the top
size and ranks the mixtures by its predictions at the top rung.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from codemix.analysis import decision as dc
from codemix.analysis import law_experiment as le
from codemix.analysis import scale_law as sl
from codemix.analysis.load import ExperimentData
from codemix.errors import LawError

log = logging.getLogger(__name__)
_HELDOUT = re.compile(r"^val/([^/]+)/(bpb|loss)$")
META = ("run", "mixture", "seed", "N", "D", "status", "rung")


def rung_label(n: float, d: float) -> str:
    return f"{n / 1e6:.3g}M x {le_tokens(d)}"


def le_tokens(d: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if d >= scale:
            return f"{d / scale:.4g}{unit}"
    return f"{d:.4g}"


def ladder_runs(data: ExperimentData) -> pd.DataFrame:
    """One row per from-scratch run: run, mixture, seed, N, D, status, rung, then one share column per task."""
    runs = data.runs[data.runs["parent"].isna()].copy()
    if not len(runs):
        raise LawError(f"experiment {data.name} has no from-scratch runs to put on a ladder.")
    plan_params = {}
    if len(data.plan) and "params" in data.plan.columns:
        plan_params = dict(zip(data.plan["run"], data.plan["params"]))
    runs["N"] = [float(p) if p is not None and np.isfinite(float(p)) else float(plan_params.get(r, np.nan))
                 for r, p in zip(runs["run"], runs["params"].where(runs["params"].notna(), None))]
    runs["D"] = runs["token_budget"].astype(float)
    runs["rung"] = [rung_label(n, d) if np.isfinite(n) else "unknown size" for n, d in zip(runs["N"], runs["D"])]
    wide = pd.DataFrame(index=runs["run"])
    if len(data.shares):
        wide = data.shares.pivot_table(index="run", columns="source", values="requested",
                                       aggfunc="first").reindex(runs["run"]).fillna(0.0)
        wide = wide.loc[:, wide.sum(axis=0) > 0]
    out = runs[["run", "mixture", "seed", "N", "D", "status", "rung"]].reset_index(drop=True)
    return pd.concat([out, wide.reset_index(drop=True)], axis=1)


def share_columns(runs: pd.DataFrame) -> list[str]:
    return [c for c in runs.columns if c not in META]


def code_family(runs: pd.DataFrame) -> str:
    """The family whose share the report follows: the first code family, else the last share column."""
    cols = share_columns(runs)
    return next((c for c in cols if c.startswith("code")), cols[-1])


def rungs(runs: pd.DataFrame) -> list[str]:
    """Rung labels by compute (6ND), smallest first."""
    r = runs.dropna(subset=["N"]).drop_duplicates("rung")
    return list(r.assign(c=r["N"] * r["D"]).sort_values("c")["rung"])


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[(runs["status"] == "finished") & np.isfinite(runs["N"])]


def check_ladder(runs: pd.DataFrame) -> None:
    """LawError naming what the finished runs lack for a law in N and D."""
    f = finished(runs)
    sizes, budgets = sorted(f["N"].unique()), f.groupby("N")["D"].nunique()
    if len(sizes) < 2:
        raise LawError(f"a law across scale needs finished runs at two or more model sizes; the finished runs "
                       f"have {len(sizes)} ({[f'{s / 1e6:.3g}M' for s in sizes]}). Run a ladder "
                       f"(gin/experiments/ladder.gin) or finish its rungs.")
    if not len(budgets) or budgets.max() < 2:
        raise LawError("a law across scale needs two token budgets at some size; every finished size has one. "
                       "Give ladder_matrix.tokens_per_param two values.")


def fit_scale(data: ExperimentData, targets: Sequence[str], form: str = "joint", resamples: int = 300,
              loo: bool = True) -> tuple[dict[str, sl.ScaleLaw], pd.DataFrame]:
    """({target: ScaleLaw}, the ladder's runs) over every finished from-scratch run."""
    runs = ladder_runs(data)
    check_ladder(runs)
    f = finished(runs).reset_index(drop=True)
    cols = share_columns(f)
    laws = {}
    for t in targets:
        y = le.target_values(data, f["run"], t)
        laws[t] = sl.fit_joint(f["N"].to_numpy(float), f["D"].to_numpy(float), f[cols].to_numpy(float), y, form,
                               cols, resamples, t, loo=loo)
    return laws, runs


def _examples(data: ExperimentData, runs: pd.DataFrame, target: str) -> tuple[pd.DataFrame, str]:
    """Tidy (rung, variant, seed, id, value) for `target` and a note on which noise it carries."""
    ex = data.examples
    bench = metric = None
    if m := _HELDOUT.match(target):
        # Runs keep per-document bits per byte only: a held-out loss target is ranked per run.
        bench, metric = (f"heldout:{m.group(1)}", "bpb") if m.group(2) == "bpb" else (None, None)
    elif "/" in target:
        bench, metric = target.rsplit("/", 1)
    if len(ex) and bench is not None:
        sub = ex[(ex["benchmark"] == bench) & (ex["metric"] == metric) & ex["run"].isin(runs["run"])]
        if set(sub["run"]) == set(runs["run"]) and len(sub):
            t = sub.merge(runs[["run", "rung", "mixture", "seed"]], on="run")
            return (t.rename(columns={"mixture": "variant"})[["rung", "variant", "seed", "id", "value"]],
                    "bootstrap over seeds and documents/examples")
    vals = le.target_values(data, runs["run"], target)
    t = runs[["rung", "mixture", "seed"]].rename(columns={"mixture": "variant"}).assign(id="run", value=vals)
    t = t[np.isfinite(t["value"])]
    return t, "one value per run (no per-example values): bootstrap over seeds only"


def decision_table(data: ExperimentData, target: str, runs: pd.DataFrame | None = None, resamples: int = 500,
                   law: sl.ScaleLaw | None = None) -> tuple[pd.DataFrame, str]:
    """Per rung: decision accuracy against the top rung with its interval, pairs, ties, missing mixtures;
    plus a 'law back-test' row when `law` is given. Returns (table, note)."""
    runs = ladder_runs(data) if runs is None else runs
    f = finished(runs)
    order = rungs(runs)
    # The reference: the most compute among rungs with two or more mixtures finished (one mixture has no pairs).
    done = [r for r in order if f[f["rung"] == r]["mixture"].nunique() >= 2]
    if not done:
        raise LawError("no rung of the ladder has two mixtures finished; decision accuracy needs pairs to rank.")
    top = done[-1]
    table, note = _examples(data, f, target)
    sense = le.default_sense(target)
    if sense == "min":  # agreement does not depend on the sense; oriented so higher is better in the table
        table = table.assign(value=-table["value"])
    res = dc.decision_accuracy(table, top, resamples)
    mixtures = list(dict.fromkeys(runs["mixture"]))
    rows = []
    for r in order:
        have = set(f[f["rung"] == r]["mixture"])
        lacking = [m for m in mixtures if m not in have]
        d = res.get(r)
        rows.append({"rung": r, "decision accuracy": d.accuracy if d else math.nan,
                     "low": d.low if d else math.nan, "high": d.high if d else math.nan,
                     "pairs": d.pairs if d else 0, "tied at top": d.tied_top if d else 0,
                     "tied here": d.tied_rung if d else 0,
                     "missing": ("all runs" if not have else ", ".join(lacking)) if lacking else ""})
    if law is not None:
        rows.append(_backtest_row(law, f, top, target, data, min(resamples, 100)))
    above = [r for r in order[order.index(top) + 1:]]
    skipped = f" (rungs above it lack finished mixtures: {', '.join(above)})" if above else ""
    return pd.DataFrame(rows), f"reference: {top}{skipped}; {note}"


def _backtest_row(law: sl.ScaleLaw, f: pd.DataFrame, top: str, target: str, data: ExperimentData,
                  resamples: int = 100) -> dict:
    cols = list(law.families)
    y = le.target_values(data, f["run"], target)
    row = {"rung": f"law from smaller sizes ({law.form})", "low": math.nan, "high": math.nan, "tied at top": 0,
           "tied here": 0, "missing": ""}
    try:
        low, rmse = sl.backtest(law, f["N"].to_numpy(float), f["D"].to_numpy(float), f[cols].to_numpy(float), y,
                                resamples=resamples)
    except LawError as e:
        return {**row, "decision accuracy": math.nan, "pairs": 0, "missing": f"not fitted: {e}"}
    t = f[f["rung"] == top].assign(y=y[(f["rung"] == top).to_numpy()])
    sign = -1.0 if le.default_sense(target) == "min" else 1.0
    measured = (t.groupby("mixture")["y"].mean() * sign).to_dict()
    first = t.drop_duplicates("mixture")
    x = (first["N"].to_numpy(float), first["D"].to_numpy(float), first[cols].to_numpy(float))
    pred = dict(zip(first["mixture"], sign * low.predict(*x)))
    acc, pairs, tt, tr = dc.agreement(pred, measured)
    # Interval: each bootstrap law of the lower sizes against the measured top rung.
    boot = [dc.agreement(dict(zip(first["mixture"], sign * b)), measured)[0] for b in low.predict_boot(*x)
            if np.all(np.isfinite(b))]
    lo, hi = (float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))) if boot else (math.nan, math.nan)
    return {**row, "decision accuracy": acc, "low": lo, "high": hi, "pairs": pairs, "tied at top": tt,
            "tied here": tr, "missing": f"top-rung RMSE {rmse:.3g} (interval: the law's bootstrap only)"}


SCALE_SIDECAR = ".scale_law.json"


def write_scale_proposal(path, opt: sl.ScaleOptimum, laws: dict, objective: str, experiment: str):
    """Mixture gin `path` with the optimum at a target scale, and <name>.scale_law.json beside it (not the
    single-scale .law.json: a run of this mixture at the ladder's sizes is not the target it was predicted at)."""
    import datetime
    import json

    from etils import epath

    path = epath.Path(path)  # a gs:// folder too
    name = path.stem
    if path.suffix != ".gin" or not re.match(r"^[A-Za-z_]\w*$", name):
        raise LawError(f"{path}: write a .gin file whose name is an identifier (letters, digits, _).")
    shares = {f: round(v, 4) for f, v in opt.shares.items() if v > 0}
    total = sum(shares.values())
    shares = {f: round(v / total, 4) for f, v in shares.items()}
    vec = [[opt.shares[f] for f in opt.families]]
    pred = {}
    for t, law in laws.items():
        lo, hi = law.interval(opt.n, opt.d, vec)
        pred[t] = {"predicted": float(law.predict(opt.n, opt.d, vec)[0]), "low": float(lo[0]), "high": float(hi[0])}
    side = {"mixture": name, "target_scale": [opt.n, opt.d], "shares": shares, "objective": objective,
            "form": next(iter(laws.values())).form, "experiment": experiment, "predicted": pred,
            "optimum_interval": {f: [opt.low[f], opt.high[f]] for f in opt.families},
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    lines = [(f"# {name}: mixture proposed by `codemix law propose --target_scale`: the optimum at "
              f"N = {opt.n:.3g} parameters, D = {opt.d:.3g} tokens."),
             f"# Objective: {objective}. Law across scale ({side['form']}, Shukor et al. 2025) fitted on {experiment}.",
             *(f"# Predicted {t} at that scale: {p['predicted']:.4f} [{p['low']:.4f}, {p['high']:.4f}]"
               for t, p in pred.items()),
             f"# Details: {name}{SCALE_SIDECAR} next to this file.",
             "", f'{name}/mixture_spec.description = "proposed by codemix law propose --target_scale: {objective}"',
             f"{name}/mixture_spec.shares = {json.dumps(shares)}", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    side_path = path.with_name(name + SCALE_SIDECAR)
    side_path.write_text(json.dumps(side, indent=2))
    return path, side_path


def variant_laws(data: ExperimentData, targets: Sequence[str], runs: pd.DataFrame | None = None,
                 resamples: int = 200) -> pd.DataFrame:
    """Per target and mixture: L(N, D) = E + A/N^alpha + B/D^beta fitted to that mixture's finished runs,
    its exponents and E with 95% intervals, or why it could not be fitted (one row each, never dropped)."""
    runs = ladder_runs(data) if runs is None else runs
    f = finished(runs).reset_index(drop=True)
    rows = []
    for t in targets:
        y = le.target_values(data, f["run"], t)
        for m in dict.fromkeys(runs["mixture"]):
            sel = (f["mixture"] == m).to_numpy()
            row = {"target": t, "mixture": m, "runs": int(sel.sum())}
            try:
                law = sl.fit_variant(f["N"][sel], f["D"][sel], y[sel], resamples, t)
            except LawError as e:
                rows.append({**row, "law": f"not fitted: {e}"})
                continue
            iv = law.param_intervals()
            rows.append({**row, "law": "; ".join(f"{k} {v:.3g} [{lo:.3g}, {hi:.3g}]" for k, (v, lo, hi) in iv.items()
                                                  if k in ("E", "alpha", "beta")), "RMSE": law.rmse})
    return pd.DataFrame(rows)
