"""The report section "Do the small runs decide?" and its two plots, for a ladder experiment.

Targets: the held-out bits per byte of every family the runs trained on
(`val/<family>/bpb`). The objective of the optimum is their unweighted sum
(every trained family's bits per byte alike), searched within the shares the
runs covered; the optimum against N is taken at the top rung's tokens per
parameter, from the smallest size to 10x the top.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from etils import epath
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from codemix.analysis import decision as dc
from codemix.analysis import ladder_analysis as la
from codemix.analysis import law_experiment as le
from codemix.analysis import scale_law as sl
from codemix.analysis.load import ExperimentData
from codemix.analysis.plots import _save
from codemix.errors import LawError

log = logging.getLogger(__name__)
K_LAST = 5  # in-loop evaluations of one run for Heineman et al.'s noise


def is_ladder(data: ExperimentData) -> bool:
    """True when the from-scratch runs were planned at two or more model sizes."""
    if not len(data.plan) or "params" not in data.plan.columns:
        return False
    scratch = data.plan[data.plan["parent"].isna()] if "parent" in data.plan.columns else data.plan
    return scratch["params"].nunique() >= 2


def _targets(runs: pd.DataFrame) -> list[str]:
    return [f"val/{f}/bpb" for f in la.share_columns(runs)]


def _fmt(x: float, f: str = "{:.3f}") -> str:
    return "—" if x is None or not math.isfinite(x) else f.format(x)


def section(data: ExperimentData, img_dir, markdown_table, resamples: int = 300) -> str:
    """The section's markdown (plots written to img_dir); `markdown_table` renders a DataFrame (report.py's)."""
    runs = la.ladder_runs(data)
    order = la.rungs(runs)
    f = la.finished(runs)
    lines = [("Every mixture at every rung (model size N x token budget D, ordered by compute 6ND); the top rung is "
              "the reference. *Decision accuracy*: the fraction of pairs of mixtures a rung orders as the top rung "
              "does (DataDecide), a pair tied at the top left out, a pair tied at the rung counted 1/2; 95% interval "
              "from a bootstrap over seeds and held-out documents (codemix/analysis/decision.py)."), ""]
    rung_rows = []
    for r in order:
        g = runs[runs["rung"] == r]
        done = g[g["status"] == "finished"]
        rung_rows.append({"rung": r, "N": g["N"].iloc[0], "D": g["D"].iloc[0], "runs finished": len(done),
                          "runs planned": len(g), "seeds": done["seed"].nunique(),
                          "state": "missing (no finished run)" if not len(done) else
                          ("complete" if len(done) == len(g) else
                           "incomplete: " + ", ".join(sorted(set(g["run"]) - set(done["run"]))))})
    lines += [markdown_table(pd.DataFrame(rung_rows), floats={"N": lambda v: f"{v:.3g}", "D": lambda v: f"{v:.3g}"}),
              ""]
    try:
        la.check_ladder(runs)
    except LawError as e:
        return "\n".join(lines + [f"No law across scale: {e}"])
    targets = _targets(f)
    laws: dict[str, dict[str, sl.ScaleLaw]] = {}
    for form in sl.FORMS:
        for t in targets:
            try:
                laws.setdefault(form, {})[t] = la.fit_scale(data, [t], form, resamples)[0][t]
            except LawError as e:
                lines.append(f"- `{t}`, {form} law: not fitted ({e})")
    for t in targets:
        best = _best_form(laws, t)
        try:
            table, note = la.decision_table(data, t, runs, resamples, laws.get(best, {}).get(t))
        except LawError as e:
            lines += [f"### `{t}`", "", f"No decision accuracy: {e}", ""]
            continue
        lines += [f"### `{t}`", "", (f"Decision accuracy ({note}); the last row ranks the mixtures by the "
                                     f"{best or 'no'} law fitted without the top size (the back-test):"), "",
                  markdown_table(table, floats={c: _fmt for c in ("decision accuracy", "low", "high")}), ""]
        lines += _signal_lines(data, f, t, markdown_table), ""
    lines += _law_lines(laws, f, markdown_table)
    per = la.variant_laws(data, targets, runs, min(resamples, 200))
    lines += ["", ("Per mixture, L(N, D) = E + A/N^α + B/D^β (OLMo's ladder form; E and the exponents with 95% "
                   "bootstrap intervals; it needs 6 distinct (N, D) cells, e.g. 3 sizes x 2 budgets):"), "",
              markdown_table(per, floats={"RMSE": lambda v: _fmt(v, "{:.4f}")})]
    png = _plot_curves(laws, f, data, img_dir)
    lines += ["", f"![metric against compute](report/{png})" if png else "_Metric-against-compute plot not drawn._"]
    png = _plot_optimum(laws, f, img_dir)
    lines += ["", f"![optimum share against N](report/{png})" if png else "_Optimum-against-N plot not drawn._"]
    lines += ["", ("What this cannot tell at laptop scale: a law fitted over a few million parameters and far below "
                   "compute-optimal budgets says how the machinery works, not where a 470M or 2.8B model's optimum "
                   "lies; benchmark accuracy sits at chance, so only held-out bits per byte are ranked.")]
    return "\n".join(lines)


def _best_form(laws, t) -> str | None:
    cands = {form: laws[form][t].loo for form in laws if t in laws[form] and math.isfinite(laws[form][t].loo)}
    if cands:
        return min(cands, key=cands.get)
    return next((form for form in sl.FORMS if t in laws.get(form, {})), None)


def _signal_lines(data: ExperimentData, f: pd.DataFrame, t: str, markdown_table) -> str:
    """Per rung: Heineman SNR (one run's last K in-loop evaluations), seed SNR, seeds needed for 80%."""
    fam = t.split("/")[1]
    y = le.target_values(data, f["run"], t)
    f = f.assign(y=y)
    order = [r for r in la.rungs(f)]
    top = order[-1]
    top_means = (-f[f["rung"] == top].groupby("mixture")["y"].mean()).to_dict()
    h = data.heldout[data.heldout["family"] == fam] if len(data.heldout) else data.heldout
    sig_top, _ = dc.pooled_seed_sd({m: g["y"].to_numpy() for m, g in f[f["rung"] == top].groupby("mixture")})
    rows = []
    for r in order:
        g = f[f["rung"] == r]
        final = g.groupby("mixture")["y"].mean().to_dict()
        run0 = g.sort_values(["seed", "mixture"])["run"].iloc[0]
        curve = h[h["run"] == run0].sort_values("step")["bpb"].to_numpy() if len(h) else np.array([])
        per = {m: gg["y"].to_numpy() for m, gg in g.groupby("mixture")}
        sd, df = dc.pooled_seed_sd(per)
        sigma, source = (sd, "this rung's seeds") if df else (sig_top, "the top rung's seeds")
        need = dc.seeds_needed((-g.groupby("mixture")["y"].mean()).to_dict(), top_means, sigma) \
            if math.isfinite(sigma) else None
        rows.append({"rung": r, "SNR (last 5 evals of one run)": dc.snr(final, curve, K_LAST),
                     "SNR (seed noise)": dc.seed_snr(per), "seeds for 80% (normal model)":
                     (str(need) if need else ("unknown: no seed noise measured" if not math.isfinite(sigma)
                                              else "none: its means disagree with the top's too often")),
                     "seed sd from": source})
    return ("Signal over noise (Heineman et al.: spread of the mixtures' scores over their mean, over the relative sd "
            "of one run's last 5 in-loop evaluations; beside it the seed sd), and the seeds per mixture a rung would "
            "need for 80% decision accuracy: P(pair right) = Φ(Δ / (σ·√(2/R))) with the rung's mean differences Δ "
            "and seed sd σ, averaged over pairs (optimistic: Δ's own noise is ignored).\n\n"
            + markdown_table(pd.DataFrame(rows), floats={"SNR (last 5 evals of one run)": _fmt,
                                                         "SNR (seed noise)": _fmt}))


def _law_lines(laws, f: pd.DataFrame, markdown_table) -> list[str]:
    lines = ["### Laws across scale", "",
             ("Shukor et al. 2025: additive L = E + 1/Σ C_i h_i^γ_i + A/N^α + B/D^β (the best mixture is the same "
              "at every scale); joint L = E + 1/Σ C_i h_i^γ_i + A_h/N^α_h + B_h/D^β_h with A_h, α_h, B_h, β_h "
              "linear in the shares h (the optimum moves with N). *LOO rung*: RMSE predicting each model size left "
              "out; *top error*: mean error at the largest size when it is left out."), ""]
    rows = []
    for form, by_t in laws.items():
        for t, law in by_t.items():
            rows.append({"target": t, "form": form, "cells": law.n_cells, "runs": law.n_runs, "RMSE": law.rmse,
                         "LOO rung": law.loo, "top error": law.top_error, "bootstrap": law.bootstrap})
    if rows:
        lines.append(markdown_table(pd.DataFrame(rows), floats={c: lambda v: _fmt(v, "{:.4f}") for c in
                                                                ("RMSE", "LOO rung", "top error")}))
    top = f.loc[(f["N"] * f["D"]).idxmax()]
    for form, by_t in laws.items():
        if len(by_t) != len(_targets(f)):
            continue
        for n in (float(top["N"]), 10 * float(top["N"])):
            try:
                o = sl.optimum(by_t, n, n * float(top["D"] / top["N"]))
            except LawError as e:
                lines.append(f"- {form}: no optimum ({e})")
                break
            fam = la.code_family(f)
            lines.append(f"- {form} law, optimum of the summed bits per byte at N = {n:.3g}, D = {o.d:.3g}: "
                         f"{fam} share {o.shares[fam]:.3f} [{o.low[fam]:.3f}, {o.high[fam]:.3f}]")
    return lines


def _plot_curves(laws, f: pd.DataFrame, data: ExperimentData, img_dir) -> str | None:
    law_form = "joint" if "joint" in laws else next(iter(laws), None)
    if law_form is None or not laws[law_form]:
        return None
    by_t = laws[law_form]
    fig = Figure(figsize=(4.6 * len(by_t), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, len(by_t)))
    cols = la.share_columns(f)
    for ax, (t, law) in zip(axes, by_t.items()):
        y = le.target_values(data, f["run"], t)
        g = f.assign(y=y, C=6 * f["N"] * f["D"])
        for i, (m, gm) in enumerate(g.groupby("mixture", sort=False)):
            color = f"C{i % 10}"
            ax.scatter(gm["C"], gm["y"], s=12, color=color, label=m)
            tpp = float(np.median(gm["D"] / gm["N"]))
            ns = np.geomspace(gm["N"].min(), gm["N"].max() * 3, 40)
            h = np.repeat(gm[cols].to_numpy(float)[:1], len(ns), axis=0)
            ax.plot(6 * ns * ns * tpp, law.predict(ns, ns * tpp, h), color=color, lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("compute 6ND (FLOPs)")
        ax.set_title(f"{t} ({law_form} law, lines at the median tokens/param)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    _save(fig, epath.Path(img_dir) / "ladder_curves.png")
    return "ladder_curves.png"


def _plot_optimum(laws, f: pd.DataFrame, img_dir) -> str | None:
    targets = _targets(f)
    top = f.loc[(f["N"] * f["D"]).idxmax()]
    tpp = float(top["D"] / top["N"])
    fam = la.code_family(f)
    ns = np.geomspace(f["N"].min(), 10 * f["N"].max(), 12)
    fig = Figure(figsize=(5.0, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    drawn = False
    for i, (form, by_t) in enumerate(laws.items()):
        if len(by_t) != len(targets):
            continue
        try:
            c = np.array(sl.optimum_curve(by_t, ns, tpp, family=fam))
        except LawError:
            continue
        ax.plot(c[:, 0], c[:, 1], color=f"C{i}", label=f"{form} law")
        ax.fill_between(c[:, 0], c[:, 2], c[:, 3], color=f"C{i}", alpha=0.2)
        drawn = True
    if not drawn:
        return None
    for n in sorted(f["N"].unique()):
        ax.axvline(n, color="0.7", lw=0.6)
    ax.set_xscale("log")
    ax.set_xlabel(f"model size N (parameters), D = {tpp:.3g} N")
    ax.set_ylabel(f"optimal {fam} share (95%)")
    ax.set_title("optimum of the summed bits per byte; grey lines: rungs", fontsize=8)
    ax.legend(fontsize=7)
    _save(fig, epath.Path(img_dir) / "ladder_optimum.png")
    return "ladder_optimum.png"
