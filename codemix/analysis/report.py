"""`codemix report DIR`: DIR/report.md with the study's tables and plots.

The report lists every run with its status, then what is missing (runs not
started, partial, or without evaluation), the category scores per variant and
stage, the relative change against the baseline variant with bootstrap 95%
intervals, the realized mixture shares, and the plots (DIR/report/*.png). A
missing baseline or missing runs are reported in the text, never a crash.
"""
from __future__ import annotations

import datetime
import logging
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from codemix.analysis import plots, tables
from codemix.analysis.load import ExperimentData, load_experiment

log = logging.getLogger(__name__)


def _cell(x) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if math.isnan(x):
            return "missing"
        return f"{x:.4g}"
    if isinstance(x, (list, tuple)):
        return ", ".join(str(i) for i in x)
    return str(x).replace("|", "\\|")


def markdown_table(df: pd.DataFrame, index: bool = False, floats: dict[str, Callable] | None = None) -> str:
    """A GitHub-flavoured markdown table of `df` (NaN shows as "missing")."""
    if index:
        df = df.reset_index()
    if not len(df.columns):
        return "_(empty)_"
    floats = floats or {}
    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    lines = [head, sep]
    for row in df.itertuples(index=False):
        cells = [floats[c](v) if c in floats and isinstance(v, float) and not math.isnan(v) else _cell(v)
                 for c, v in zip(df.columns, row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _runs_section(data: ExperimentData) -> str:
    cols = ["run", "stage", "status", "final_step", "steps", "tokens", "final_loss", "has_eval"]
    r = data.runs[[c for c in cols if c in data.runs.columns]]
    return markdown_table(r, floats={"tokens": lambda v: f"{v:.4g}", "final_loss": lambda v: f"{v:.4f}"})


def _missing_section(data: ExperimentData) -> str:
    if not data.missing:
        return "Nothing is missing: every planned run finished and was evaluated."
    lines = [f"{len(data.missing)} run(s) are missing or incomplete; their cells below read \"missing\".", ""]
    for m in data.missing:
        lines.append(f"- `{m['run']}` ({', '.join(m['variants']) or 'no variant'}): {m['problem']}")
    return "\n".join(lines)


def _scores_section(data: ExperimentData, scores: pd.DataFrame) -> str:
    wide = tables.score_table(data, scores)
    if not len(wide):
        return "No variants."
    if all(c == "status" for c in wide.columns):
        return "No run has evaluation results (eval.json); scores are missing.\n\n" + markdown_table(wide, index=True)
    note = ("Mean over each category's benchmarks of their primary metric (and over seeds); "
            "\"missing\" = the run has no evaluation.")
    return note + "\n\n" + markdown_table(wide, index=True, floats={c: lambda v: f"{v:.4f}" for c in wide.columns})


def _change_section(data: ExperimentData, baseline: str, resamples: int) -> str:
    rel = tables.relative_change_table(data, baseline, resamples)
    if "note" in rel.attrs:
        return f"Relative change not computed: {rel.attrs['note']}."
    if not len(rel):
        return f"No variant besides the baseline {baseline!r}."
    show = rel.assign(
        **{"change %": rel["change"],
           "95% CI": [f"[{lo:+.1f}, {hi:+.1f}]" if pd.notna(lo) else "–"
                      for lo, hi in zip(rel["ci_low"], rel["ci_high"])]})
    show = show[["variant", "category", "change %", "95% CI", "score", "baseline_score", "n_benchmarks",
                 "n_seeds", "status"]]
    note = (f"Final stage of each variant against the final stage of `{baseline}`: "
            f"100 × (score − baseline) / baseline. Intervals: paired bootstrap over benchmarks "
            f"(and over seeds when there are several), {resamples} resamples.")
    return note + "\n\n" + markdown_table(show, floats={"change %": lambda v: f"{v:+.1f}",
                                                        "score": lambda v: f"{v:.4f}",
                                                        "baseline_score": lambda v: f"{v:.4f}"})


def _shares_section(data: ExperimentData) -> str:
    s = tables.shares_table(data)
    if not len(s):
        return "No run has logged its token counts yet."
    return markdown_table(s, floats={"requested": lambda v: f"{v:.3f}", "realized": lambda v: f"{v:.3f}",
                                     "tokens": lambda v: f"{v:.4g}"})


PLOTS = (
    ("loss_curves", "Training loss per source", "no run has logged metrics", plots.loss_curves),
    ("category_bars", "Category scores per variant (final stage)", "no evaluated run", plots.category_bars),
    ("sweep_curve", "Code-share sweep", "no evaluated code_p<N> variants", plots.sweep_curve),
    ("cooldown_effect", "Effect of cooldown", "no evaluated cooldown with an evaluated stage before it",
     plots.cooldown_effect),
)


def _guard(name: str, fn: Callable[[], str]) -> str:
    # The report is written at the end of a long experiment: one broken
    # section must not cost the others.
    try:
        return fn()
    except Exception as e:
        log.exception("report section %s failed", name)
        return f"_This section could not be built: {type(e).__name__}: {e}_"


def write_report(experiment_dir: str, baseline: str = "text_only", resamples: int = 2000) -> str:
    """Write DIR/report.md and DIR/report/*.png; returns the report's path."""
    root = Path(experiment_dir)
    data = load_experiment(root)
    img_dir = root / "report"
    img_dir.mkdir(parents=True, exist_ok=True)
    try:
        scores = tables.category_scores(data, resamples)
    except Exception:
        # Each section then recomputes and reports its own failure.
        log.exception("category scores failed")
        scores = None
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    parts = [
        f"# Experiment report: {data.name}",
        "",
        (f"Written {now} from `{root}`. Baseline variant: `{baseline}`. "
         f"{len(data.variants)} variants, {len(data.runs)} runs."),
        "",
        "## Runs", "", _guard("runs", lambda: _runs_section(data)), "",
        "## Missing", "", _guard("missing", lambda: _missing_section(data)), "",
        "## Category scores per variant and stage", "", _guard("scores", lambda: _scores_section(data, scores)), "",
        f"## Relative change against `{baseline}` (%)", "",
        _guard("change", lambda: _change_section(data, baseline, resamples)), "",
        "## Realized mixture shares", "", _guard("shares", lambda: _shares_section(data)), "",
        "## Plots", "",
    ]
    for name, title, absent, fn in PLOTS:
        png = img_dir / f"{name}.png"
        if png.exists():
            png.unlink()  # never show a stale plot from an earlier report

        def draw(fn=fn, png=png, title=title, absent=absent, name=name) -> str:
            args = (data, png) if fn is plots.loss_curves else (data, png, scores)
            out = fn(*args)
            return f"![{title}](report/{name}.png)" if out else f"_Not drawn: {absent}._"

        parts += [f"### {title}", "", _guard(name, draw), ""]
    path = root / "report.md"
    path.write_text("\n".join(parts))
    log.info("wrote %s", path)
    return str(path)
