"""The study's plots (matplotlib's Agg canvas), each saved as one PNG.

  loss_curves       training loss per source against tokens seen by the
                    variant (its stages laid end to end), one line per variant;
                    one panel per source that some run trained on (no panel
                    for the overall loss: it averages different mixtures).
  heldout_curves    held-out bits per byte per family against tokens seen by
                    the variant: every run measures every family, so these
                    panels compare mixtures on the same text.
  category_bars     final-stage score per category, one bar per variant, 95%
                    interval whiskers.
  sweep_curve       continuous metrics (reasoning prob_correct, knowledge and
                    code gold bpb) against code share (%) for the code_p<N>
                    variants, 95% intervals over examples and seeds.
  heldout_sweep     held-out bpb per family against code share, 95%
                    intervals over documents and seeds.
  cooldown_effect   per category, the stage before a cooldown and the
                    cooldown itself, side by side, for every cooled variant.
  mixture_law       per target, the from-scratch runs against their share of
                    one family, the fitted exp law with its bootstrap band,
                    the predicted optimum and trained proposals
                    (codemix/analysis/law_experiment.py).

Each returns the PNG path it wrote, or None when the experiment has nothing to
plot (no sweep variants, no cooldowns, no evaluation), so a report can say so.
Figures are drawn on an Agg canvas directly (not through pyplot), so plotting
needs no display, touches no global backend state, and works inside a
notebook whatever its backend.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
from etils.epath import Path
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from codemix.analysis.load import ExperimentData
from codemix.analysis.paired import PairedScores, continuous, families, final_runs
from codemix.analysis.tables import _categories, category_scores, heldout_scores

SWEEP = re.compile(r"^code_p(\d+)$")
MAX_WIDTH = 16.0  # inches: the full matrix has ~22 variants
_COLORS = colormaps["tab20"]


def _style(i: int) -> dict:
    """Distinct line/bar style for up to 60 variants (20 colours x 3 dash styles)."""
    return {"color": _COLORS(i % 20), "linestyle": ("-", "--", ":")[(i // 20) % 3]}


def _subplots(rows: int = 1, cols: int = 1, figsize=(5.5, 3.8)):
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _legend(ax, entries: int) -> None:
    """Inside the axes for a few entries; right of the figure for the full matrix."""
    if entries <= 6:
        ax.legend(fontsize=7)
    else:
        handles, labels = ax.get_legend_handles_labels()
        ax.figure.legend(handles, labels, loc="outside right upper", fontsize=6, ncol=1 + entries // 16)


def _save(fig: Figure, path: str | Path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:  # epath: a gs:// report folder too
        fig.savefig(f, dpi=110, format="png")
    return str(path)


def variant_curves(data: ExperimentData) -> pd.DataFrame:
    """data.losses per variant, with `variant_tokens` = tokens since the variant's init.

    Stages are laid end to end: a stage's tokens are offset by the tokens its
    earlier stages saw. With several seeds, the lowest seed's runs are used.
    """
    if not len(data.losses) or not len(data.chains):
        return pd.DataFrame(columns=["variant", "run", "stage", "source", "variant_tokens", "loss"])
    parts = []
    for variant, stage, run, offset in _chain_stages(data):
        ls = data.losses[data.losses["run"] == run]
        parts.append(ls.assign(variant=variant, stage=stage, variant_tokens=ls["tokens"] + offset))
    if not parts:
        return pd.DataFrame(columns=["variant", "run", "stage", "source", "variant_tokens", "loss"])
    return pd.concat(parts, ignore_index=True)


def _chain_stages(data: ExperimentData):
    """(variant, stage, run, tokens before this stage) of each variant's chain in
    stage order, the lowest seed's run per stage (stages laid end to end)."""
    last_tokens = data.metrics.groupby("run")["tokens"].max()
    for variant, chain in data.chains.groupby("variant", sort=False):
        offset = 0.0
        for _, stage in chain.sort_values(["stage_index", "seed"]).groupby("stage_index"):
            run = stage["run"].iloc[0]
            yield variant, stage["stage"].iloc[0], run, offset
            offset += float(last_tokens.get(run, 0.0))


def _line(ax, x, y, i: int, label: str) -> None:
    # A stage logged once is a single point: a line alone would not show it.
    ax.plot(x, y, label=label, lw=1.3, marker="." if len(x) < 3 else None, **_style(i))


def _panels(curves: pd.DataFrame, key: str, path, title: str, ylabel: str) -> str | None:
    curves = curves[np.isfinite(curves["value"].astype(float))]
    if not len(curves):
        return None
    panels = list(dict.fromkeys(curves[key]))
    variants = list(dict.fromkeys(curves["variant"]))
    cols = min(3, len(panels))
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = _subplots(rows, cols, figsize=(5 * cols, 3.6 * rows))
    for ax, panel in zip(axes.flat, panels):
        for i, variant in enumerate(variants):
            c = curves[(curves[key] == panel) & (curves["variant"] == variant)]
            if len(c):
                _line(ax, c["variant_tokens"].to_numpy(), c["value"].to_numpy(), i, variant)
        ax.set_title(f"{title}: {panel}")
        ax.set_xlabel("tokens seen by the variant")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    _legend(axes.flat[0], len(variants))
    return _save(fig, path)


def _trained_losses(data: ExperimentData) -> pd.DataFrame:
    curves = variant_curves(data)
    curves = curves[(curves["source"] != "all") & np.isfinite(curves["loss"].astype(float))]
    return curves[pd.to_numeric(curves["source_tokens"], errors="coerce").fillna(0) > 0]


def loss_sources(data: ExperimentData) -> list[str]:
    """The loss plot's panels: sources some run trained on (tokens > 0 and a finite loss).

    No panel for the overall loss: it averages over different mixtures, so
    variants would differ in it by what they train on, not how well.
    """
    return sorted(_trained_losses(data)["source"].unique())


def loss_curves(data: ExperimentData, path: str | Path) -> str | None:
    curves = _trained_losses(data)
    order = {x: i for i, x in enumerate(sorted(curves["source"].unique()))}
    curves = curves.assign(value=curves["loss"]).sort_values("source", key=lambda s: s.map(order), kind="stable")
    return _panels(curves, "source", path, "training loss", "training loss (nats per token)")


def heldout_variant_curves(data: ExperimentData) -> pd.DataFrame:
    """data.heldout per variant with `variant_tokens` (stages laid end to end, lowest seed)."""
    cols = ["variant", "run", "family", "variant_tokens", "bpb"]
    if not len(data.heldout) or not len(data.chains) or not len(data.metrics):
        return pd.DataFrame(columns=cols)
    parts = []
    for variant, _, run, offset in _chain_stages(data):
        h = data.heldout[data.heldout["run"] == run]
        parts.append(pd.DataFrame({"variant": variant, "run": run, "family": h["family"],
                                   "variant_tokens": _tokens_at(data, run, h["step"]) + offset,
                                   "bpb": h["bpb"]}))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    return out.dropna(subset=["variant_tokens", "bpb"])


def _tokens_at(data: ExperimentData, run: str, steps) -> np.ndarray:
    """Tokens seen at `steps`, from the run's logged (step, tokens); a held-out
    evaluation need not fall on a logged step, so steps are interpolated (and
    extrapolated at the run's tokens per step)."""
    m = data.metrics[data.metrics["run"] == run].dropna(subset=["step", "tokens"]).sort_values("step")
    steps = np.asarray(steps, dtype=np.float64)
    if not len(m):
        return np.full(steps.shape, np.nan)
    xs, ys = m["step"].to_numpy(np.float64), m["tokens"].to_numpy(np.float64)
    per_step = ys[-1] / xs[-1] if xs[-1] > 0 else np.nan
    out = np.interp(steps, xs, ys)
    return np.where(steps > xs[-1], steps * per_step, np.where(steps < xs[0], steps * ys[0] / max(xs[0], 1), out))


def heldout_curves(data: ExperimentData, path: str | Path) -> str | None:
    curves = heldout_variant_curves(data)
    if not len(curves):
        return None
    order = {f: i for i, f in enumerate(families(data))}
    curves = curves.assign(value=curves["bpb"]).sort_values("family", key=lambda s: s.map(order), kind="stable")
    return _panels(curves, "family", path, "held-out", "bits per byte")


def _final_scores(data: ExperimentData, scores: pd.DataFrame | None) -> pd.DataFrame:
    s = category_scores(data) if scores is None else scores
    if not len(s):
        return s
    last = s.groupby("variant")["stage_index"].transform("max")
    return s[(s["stage_index"] == last)].dropna(subset=["score"])


def _whiskers(sub: pd.DataFrame) -> np.ndarray:
    lo = (sub["score"] - sub["ci_low"]).clip(lower=0).fillna(0).to_numpy()
    hi = (sub["ci_high"] - sub["score"]).clip(lower=0).fillna(0).to_numpy()
    return np.vstack([lo, hi])


def category_bars(data: ExperimentData, path: str | Path, scores: pd.DataFrame | None = None) -> str | None:
    final = _final_scores(data, scores)
    if not len(final):
        return None
    cats = _categories(final["category"])
    variants = list(dict.fromkeys(final["variant"]))
    width = 0.8 / len(variants)
    fig, axes = _subplots(figsize=(min(MAX_WIDTH, max(5.0, 0.6 * len(cats) * len(variants))), 3.8))
    ax = axes[0, 0]
    x = np.arange(len(cats))
    for i, v in enumerate(variants):
        sub = final[final["variant"] == v].set_index("category").reindex(cats)
        ax.bar(x + (i - (len(variants) - 1) / 2) * width, sub["score"].fillna(0), width,
               yerr=_whiskers(sub.reset_index()), capsize=2, label=v, color=_style(i)["color"],
               hatch=(None, "//", "..")[(i // 20) % 3])
    ax.set_xticks(x, cats)
    ax.set_ylabel("score (final stage)")
    ax.set_title("category scores per variant")
    _legend(ax, len(variants))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _sweep_variants(data: ExperimentData) -> list[tuple[str, int]]:
    out = [(v, int(m.group(1))) for v in data.variants if (m := SWEEP.match(v))]
    return sorted(out, key=lambda x: x[1])


def sweep_points(data: ExperimentData, scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """Continuous metrics of the code_p<N> variants' final stages against their code share (%).

    One row per variant and category: reasoning mean prob_correct, knowledge
    and code gold bpb, with the paired-bootstrap interval over examples and
    seeds (NaN interval without per-example values; `scores` is unused and
    kept for callers that pass the category scores).
    """
    cols = ["variant", "code_percent", "category", "metric", "score", "ci_low", "ci_high", "interval"]
    paired = PairedScores.of(data)
    rows = []
    for v, pct in _sweep_variants(data):
        runs = final_runs(data, v)
        for c in _categories(set(paired.category_of.values())):
            if c not in ("reasoning", "knowledge", "code"):
                continue
            m = continuous(c)
            benches = [b for b in paired.benchmarks(m) if all(paired.has_record(r, m, b) for r in runs)]
            if not runs or not benches:
                continue
            mean, lo, hi, why = paired.interval(runs, m)
            if why != "ok":
                mean = float(np.nanmean(paired.per_seed(runs, m, benches)))
            rows.append({"variant": v, "code_percent": pct, "category": c, "metric": m.label, "score": mean,
                         "ci_low": lo, "ci_high": hi, "interval": "ok" if why == "ok" else why})
    return pd.DataFrame(rows, columns=cols)


def _errorbar(ax, x, y, lo, hi, **kw) -> None:
    err = np.vstack([(y - lo).clip(min=0), (hi - y).clip(min=0)])
    ax.errorbar(x, y, yerr=np.nan_to_num(err), marker="o", capsize=2, **kw)


def sweep_curve(data: ExperimentData, path: str | Path, scores: pd.DataFrame | None = None) -> str | None:
    pts = sweep_points(data, scores)
    if not len(pts):
        return None
    metrics = list(dict.fromkeys(pts["metric"]))
    fig, axes = _subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6))
    for ax, m in zip(axes.flat, metrics):
        sub = pts[pts["metric"] == m]
        _errorbar(ax, sub["code_percent"].to_numpy(), sub["score"].to_numpy(), sub["ci_low"].to_numpy(),
                  sub["ci_high"].to_numpy())
        ax.set_xlabel("code share of the mixture (%)")
        ax.set_title(m + ("" if "prob_correct" in m else " (lower is better)"), fontsize=9)
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("final-stage value (95% interval)")
    return _save(fig, path)


def heldout_sweep_points(data: ExperimentData) -> pd.DataFrame:
    """heldout_scores of the code_p<N> variants with their code share in percent."""
    sweep = dict(_sweep_variants(data))
    if not sweep:
        return pd.DataFrame(columns=["variant", "family", "bpb", "ci_low", "ci_high", "code_percent"])
    h = heldout_scores(data)
    h = h[h["variant"].isin(sweep)]
    return h.assign(code_percent=h["variant"].map(sweep)).sort_values(["family", "code_percent"])


def heldout_sweep(data: ExperimentData, path: str | Path) -> str | None:
    pts = heldout_sweep_points(data)
    if not len(pts):
        return None
    fig, axes = _subplots(figsize=(5.5, 3.8))
    ax = axes[0, 0]
    for i, fam in enumerate(f for f in families(data) if f in set(pts["family"])):
        sub = pts[pts["family"] == fam]
        _errorbar(ax, sub["code_percent"].to_numpy(), sub["bpb"].to_numpy(), sub["ci_low"].to_numpy(),
                  sub["ci_high"].to_numpy(), label=fam, color=_style(i)["color"])
    ax.set_xlabel("code share of the mixture (%)")
    ax.set_ylabel("held-out bits per byte (95% interval)")
    ax.set_title("held-out bpb per family across the code-share sweep")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def cooldown_pairs(data: ExperimentData, scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per cooled variant and category: score before (the stage it cools) and after."""
    s = category_scores(data) if scores is None else scores
    cols = ["variant", "category", "before", "after"]
    if not len(s):
        return pd.DataFrame(columns=cols)
    rows = []
    for variant, v in s.groupby("variant", sort=False):
        cool = v[v["stage"] == "cooldown"]
        if not len(cool):
            continue
        idx = cool["stage_index"].max()
        for _, r in cool[cool["stage_index"] == idx].iterrows():
            prev = v[(v["stage_index"] == idx - 1) & (v["category"] == r["category"])]
            before = float(prev["score"].iloc[0]) if len(prev) else np.nan
            rows.append({"variant": variant, "category": r["category"], "before": before, "after": r["score"]})
    return pd.DataFrame(rows, columns=cols)


def cooldown_effect(data: ExperimentData, path: str | Path, scores: pd.DataFrame | None = None) -> str | None:
    pairs = cooldown_pairs(data, scores).dropna(subset=["before", "after"], how="all")
    if not len(pairs):
        return None
    variants = list(dict.fromkeys(pairs["variant"]))
    cats = _categories(pairs["category"])
    fig, axes = _subplots(1, len(cats), figsize=(min(MAX_WIDTH, max(3.0, 1.5 * len(variants)) * len(cats)), 3.8))
    x = np.arange(len(variants))
    for ax, c in zip(axes.flat, cats):
        sub = pairs[pairs["category"] == c].set_index("variant").reindex(variants)
        ax.bar(x - 0.2, sub["before"].fillna(0), 0.4, label="before cooldown")
        ax.bar(x + 0.2, sub["after"].fillna(0), 0.4, label="after cooldown")
        ax.set_xticks(x, variants, rotation=30, ha="right", fontsize=7)
        ax.set_title(c)
        ax.grid(axis="y", alpha=0.3)
    axes.flat[0].set_ylabel("score")
    axes.flat[0].legend(fontsize=7)
    return _save(fig, path)


def mixture_law(data: ExperimentData, path: str | Path) -> str | None:
    """Per target: the fitted runs' points (95% interval), the exp law with its bootstrap band,
    the predicted optimum (star) and trained proposals (measured, with the prediction beside).
    Drawn when exactly two families vary (the x axis is the first one's share)."""
    from codemix.analysis.law_experiment import report_laws

    rep = report_laws(data)
    laws = rep.get("laws") or {}
    law0 = next(iter(laws.values()), None)
    if law0 is None or len(law0.varying) != 2:
        return None
    fam, ref = law0.varying
    fig, axes = _subplots(1, len(laws), figsize=(4.4 * len(laws), 3.6))
    grid = np.linspace(0, 1, 201)
    for ax, (t, law) in zip(axes.flat, laws.items()):
        s = np.zeros((len(grid), len(law.families)))
        s[:, law.families.index(fam)], s[:, law.families.index(ref)] = grid, 1 - grid
        lo, hi = law.interval(s)
        ax.fill_between(grid, lo, hi, alpha=0.25, label="law 95% band")
        ax.plot(grid, law.predict(s), lw=1.3, label=f"{law.form} law")
        pts = rep["points"][t]
        _errorbar(ax, pts[fam].to_numpy(), pts["measured"].to_numpy(), pts["low"].to_numpy(),
                  pts["high"].to_numpy(), linestyle="none", color="k", label="runs (mean, 95%)")
        opt = rep["optimum"][t]
        x = opt.shares[law.families.index(fam)]
        ax.plot([x], [opt.predicted[t][0]], marker="*", ms=12, color="tab:red", linestyle="none",
                label=f"optimum {fam} {x:.2f}")
        pv = rep["proposals"]
        pv = pv[pv["target"] == t] if len(pv) else pv
        for r in pv.itertuples():
            px = float(r.shares.get(fam, 0.0))
            _errorbar(ax, np.array([px]), np.array([r.measured]), np.array([r.low]), np.array([r.high]),
                      linestyle="none", color="tab:green", label=f"{r.mixture} measured")
            ax.plot([px], [r.predicted], marker="x", color="tab:green", linestyle="none")
        ax.set_xlabel(f"{fam} share of the mixture")
        ax.set_title(t, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return _save(fig, path)

