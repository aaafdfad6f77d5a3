"""The study's plots (matplotlib's Agg canvas), each saved as one PNG.

  loss_curves       training loss per source against tokens seen by the
                    variant (its stages laid end to end), one line per variant.
  category_bars     final-stage score per category, one bar per variant, 95%
                    interval whiskers.
  sweep_curve       score against code share (%) for the code_p<N> variants.
  cooldown_effect   per category, the stage before a cooldown and the
                    cooldown itself, side by side, for every cooled variant.

Each returns the PNG path it wrote, or None when the experiment has nothing to
plot (no sweep variants, no cooldowns, no evaluation), so a report can say so.
Figures are drawn on an Agg canvas directly (not through pyplot), so plotting
needs no display, touches no global backend state, and works inside a
notebook whatever its backend.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from codemix.analysis.load import ExperimentData
from codemix.analysis.tables import _categories, category_scores

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
    fig.savefig(path, dpi=110)
    return str(path)


def variant_curves(data: ExperimentData) -> pd.DataFrame:
    """data.losses per variant, with `variant_tokens` = tokens since the variant's init.

    Stages are laid end to end: a stage's tokens are offset by the tokens its
    earlier stages saw. With several seeds, the lowest seed's runs are used.
    """
    if not len(data.losses) or not len(data.chains):
        return pd.DataFrame(columns=["variant", "run", "stage", "source", "variant_tokens", "loss"])
    last_tokens = data.metrics.groupby("run")["tokens"].max()
    parts = []
    for variant, chain in data.chains.groupby("variant", sort=False):
        offset = 0.0
        for _, stage in chain.sort_values(["stage_index", "seed"]).groupby("stage_index"):
            run = stage["run"].iloc[0]
            ls = data.losses[data.losses["run"] == run]
            parts.append(ls.assign(variant=variant, stage=stage["stage"].iloc[0],
                                   variant_tokens=ls["tokens"] + offset))
            offset += float(last_tokens.get(run, 0.0))
    if not parts:
        return pd.DataFrame(columns=["variant", "run", "stage", "source", "variant_tokens", "loss"])
    return pd.concat(parts, ignore_index=True)


def loss_curves(data: ExperimentData, path: str | Path) -> str | None:
    curves = variant_curves(data)
    if not len(curves):
        return None
    variants = list(dict.fromkeys(curves["variant"]))
    sources = ["all"] + sorted(s for s in curves["source"].unique() if s != "all")
    if len(sources) == 2:  # one source: "all" repeats it
        sources = sources[1:]
    cols = min(3, len(sources))
    rows = int(np.ceil(len(sources) / cols))
    fig, axes = _subplots(rows, cols, figsize=(5 * cols, 3.6 * rows))
    for ax, source in zip(axes.flat, sources):
        for i, variant in enumerate(variants):
            c = curves[(curves["source"] == source) & (curves["variant"] == variant)]
            ax.plot(c["variant_tokens"], c["loss"], label=variant, lw=1.3, **_style(i))
        ax.set_title(f"loss: {source}")
        ax.set_xlabel("tokens seen by the variant")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(sources):]:
        ax.axis("off")
    _legend(axes.flat[0], curves["variant"].nunique())
    return _save(fig, path)


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


def sweep_points(data: ExperimentData, scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """Final scores of the code_p<N> variants with their code share in percent."""
    final = _final_scores(data, scores)
    if not len(final):
        return final
    share = final["variant"].str.extract(SWEEP)[0]
    out = final[share.notna()].assign(code_percent=pd.to_numeric(share[share.notna()]))
    return out.sort_values("code_percent")


def sweep_curve(data: ExperimentData, path: str | Path, scores: pd.DataFrame | None = None) -> str | None:
    pts = sweep_points(data, scores)
    if not len(pts):
        return None
    fig, axes = _subplots()
    ax = axes[0, 0]
    for c in _categories(pts["category"]):
        sub = pts[pts["category"] == c]
        ax.errorbar(sub["code_percent"], sub["score"], yerr=_whiskers(sub), marker="o", capsize=2, label=c)
    ax.set_xlabel("code share of the mixture (%)")
    ax.set_ylabel("score")
    ax.set_title("code-share sweep")
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
