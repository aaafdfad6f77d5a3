"""`codemix report DIR`: DIR/report.md with the study's findings, tables and plots.

Section order:
  1. Findings: each headline claim of the study against this experiment's
     measurement on its best-signal metric, with a 95% interval and a verdict
     (codemix/analysis/findings.py), the claims this scale cannot resolve,
     then held-out bits-per-byte comparisons against the baseline.
  2. Table 2: the study's layout (reasoning, knowledge, NL average, code,
     total average) per variant and stage, on primary metrics.
  3. Signal and noise: per metric, seed standard deviation and the spread
     across variants over it.
  4. Category scores with their 95% intervals, relative change against the
     baseline, held-out bits per byte per variant.
  5. Mixture law: laws fitted to the from-scratch runs' shares, their
     leave-one-out error, the predicted optimum, and predicted vs measured
     for trained proposals (codemix/analysis/law_experiment.py).
  6. Missing runs, all runs, realized mixture shares, plots (DIR/report/*.png).

Every interval of a score or change is the t interval over per-example
values with the experiment's pooled seed noise (codemix/analysis/stats.py,
paired.py); where a run has none, the interval reads "missing (no
per-example values)". Verdicts are corrected for multiplicity (Holm). A missing baseline, variant, metric or run
is reported in the text, never a crash.
"""
from __future__ import annotations

import datetime
import logging
import math
from collections.abc import Callable

import pandas as pd
from etils.epath import Path

from codemix.analysis import findings, ladder_report, phases, plots, tables
from codemix.analysis.load import ExperimentData, load_experiment
from codemix.analysis.paired import PairedScores

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
    """A GitHub-flavoured markdown table of `df` (NaN shows as "missing").

    Cells are formatted here (`floats` per column, `_cell` otherwise) and laid out by
    `DataFrame.to_markdown`; numeric parsing is off so that a formatted cell such as
    "+10.0" or "0.500" is written exactly as formatted.
    """
    if index:
        df = df.reset_index()
    if not len(df.columns):
        return "_(empty)_"
    floats = floats or {}
    rows = [[floats[c](v) if c in floats and isinstance(v, float) and not math.isnan(v) else _cell(v)
             for c, v in zip(df.columns, row)]
            for row in df.itertuples(index=False)]
    shown = pd.DataFrame(rows, columns=[str(c) for c in df.columns], dtype=object)
    return shown.to_markdown(index=False, tablefmt="github", disable_numparse=True)


def _ci(lo: float, hi: float, why: str = "missing", fmt: str = "{:+.1f}") -> str:
    if isinstance(lo, float) and isinstance(hi, float) and math.isfinite(lo) and math.isfinite(hi):
        return f"[{fmt.format(lo)}, {fmt.format(hi)}]"
    return why


INTERVAL_NOTE = ("95% intervals are t intervals: examples (documents) paired by id between the two sides and "
                 "jackknifed within each benchmark, plus a seed term whose variance is pooled over every seed "
                 "group of this experiment (each variant's final stage), with Satterthwaite's degrees of "
                 "freedom (codemix/analysis/stats.py). They assume that seed variance is alike, as a fraction "
                 "of the score, across variants.")


CANT_RESOLVE = "Cannot be resolved at this scale (not significant after the table's correction, or seed noise unmeasured)"


def _findings_section(data: ExperimentData, paired: PairedScores) -> str:
    f = findings.claim_findings(data, scores=paired)
    show = f.assign(**{"measured %": f["improvement"],
                       "95% CI": [_ci(lo, hi) for lo, hi in zip(f["ci_low"], f["ci_high"])],
                       "p (Holm)": ["–" if not math.isfinite(p) else f"{p:.3f}" for p in f["p_holm"]],
                       "detects ±%": ["–" if not math.isfinite(m) else f"{m:.1f}" for m in f["mde"]]})
    show = show[["claim", "category", "paper", "comparison", "metric", "measured %", "95% CI", "p (Holm)",
                 "detects ±%", "verdict", "note"]]
    intro = (
        "Each headline claim of the study (Aryabumi et al. 2024) against this experiment's final stages, on the "
        "metric with the best signal the experiment has: reasoning = mean `prob_correct` (probability of the gold "
        "choice) over the reasoning benchmarks; knowledge and code = gold bits per byte, lower is better. "
        "*measured %* is the relative improvement, 100 × (V − B) / B, sign-flipped for bits per byte so that "
        "positive means better, as in the paper; only its sign is comparable with the paper's number (theirs are "
        "accuracies at 470M–2.8B parameters). " + INTERVAL_NOTE + " Verdicts control the error rate over the "
        "whole table: Holm's procedure at 5% over every testable row (*p (Holm)* is the adjusted p-value), so a "
        "null experiment gives any verdict at most 1 time in 20. **agrees** / **contradicts**: Holm rejects "
        "\"no change\" and the change is on / against the paper's side; **can't tell at this scale** otherwise. "
        "For \"best\" claims the variant is compared with every other candidate (the closest is shown): agrees "
        "when it beats all of them, contradicts when one beats it (Bonferroni within the row). *detects ±%* is "
        "the smallest change this comparison detects with 80% power; where it exceeds the paper's number the "
        "note says the row is underpowered. **can't tell: one seed**: no variant of the experiment has two "
        "seeds, so seed noise is unmeasured and no verdict is given.")
    agree = [f"{r.claim} ({r.category})" for r in f.itertuples() if r.verdict == findings.AGREES]
    contra = [f"{r.claim} ({r.category})" for r in f.itertuples() if r.verdict == findings.CONTRADICTS]
    cant, missing = findings.unresolved(f)
    lines = [intro, "", markdown_table(show, floats={"measured %": lambda v: f"{v:+.1f}"}), ""]
    for label, items in (("Agrees", agree), ("Contradicts", contra),
                         (CANT_RESOLVE, cant),
                         ("Not measured in this experiment", missing)):
        lines.append(f"- **{label}:** " + ("; ".join(items) if items else "none") + ".")
    one_seed = f[f["min_seeds"] == 1]
    if len(one_seed):
        lines.append(f"- **One seed:** {len(one_seed)} of the measured rows compare a side with a single seed; "
                     "its seed noise is the pooled estimate from the experiment's other variants where they "
                     "have seeds (run `Experiment.seeds` ≥ 2 to measure it).")
    lines += ["", _reasoning_note(paired)]
    return "\n".join(lines)


def _reasoning_note(paired: PairedScores) -> str:
    reasoning = sorted(b for b, c in paired.category_of.items() if c == "reasoning")
    study = [b for b in reasoning if b in findings.STUDY_REASONING]
    return (f"Reasoning benchmarks here: {', '.join(f'`{b}`' for b in reasoning) or 'none'} "
            f"({len(study)} of the study's 11 reasoning tasks; {' and '.join(findings.UNAVAILABLE_REASONING)} "
            f"are not available offline, so no codemix experiment has them).")


def _heldout_findings_section(data: ExperimentData, paired: PairedScores, baseline: str) -> str:
    h = findings.heldout_findings(data, baseline, scores=paired)
    if "note" in h.attrs:
        return f"No held-out comparison: {h.attrs['note']}."
    base = h.attrs["baseline"]
    if not len(h):
        return f"No variant besides the baseline `{base}`."
    show = h.assign(**{"change %": h["change"],
                       "95% CI": [_ci(lo, hi, why if why != "ok" else "missing", "{:+.2f}")
                                  for lo, hi, why in zip(h["ci_low"], h["ci_high"], h["status"])],
                       "excludes 0": ["yes" if x else "no" for x in h["excludes_zero"]],
                       "after Holm": ["yes" if x else "no" for x in h["holds_after_holm"]]})
    show = show[["variant", "family", "bpb", "baseline_bpb", "change %", "95% CI", "excludes 0", "after Holm",
                 "note"]]
    note = (f"Final stage of each variant against `{base}`"
            f"{'' if base == baseline else f' (the requested baseline `{baseline}` is absent)'}: relative change "
            f"of each held-out family's bits per byte, 100 × (V − B) / B; negative = lower bpb = better. "
            f"{INTERVAL_NOTE} *after Holm*: the comparison holds under Holm's correction over this table "
            f"(family-wise 5%); an interval that excludes 0 alone is expected about once in 20 comparisons "
            f"from noise.")
    if h.attrs.get("same_runs"):
        note += (f" Left out, their final runs being `{base}`'s own: "
                 f"{', '.join(f'`{v}`' for v in h.attrs['same_runs'])}.")
    return "\n".join([note, "", findings.heldout_summary(h), "",
                      markdown_table(show, floats={"change %": lambda v: f"{v:+.2f}", "bpb": lambda v: f"{v:.4f}",
                                                   "baseline_bpb": lambda v: f"{v:.4f}"})])


def _study_section(data: ExperimentData, scores: pd.DataFrame) -> str:
    t = tables.study_table(data, scores)
    if not len(t):
        return "No variants."
    prim = data.evals[data.evals["primary"].astype(bool)] if len(data.evals) else data.evals
    metrics = ", ".join(f"{b} {m}" for b, m in sorted(dict(zip(prim["benchmark"], prim["metric"])).items())
                        if not str(b).startswith("category:")) if len(prim) else "none"
    note = ("The study's Table 2 layout, on primary metrics (" + metrics + "): category means over benchmarks "
            "and seeds; NL avg = mean of reasoning and knowledge; total avg = mean of reasoning, knowledge and "
            "code. \"missing\" = not evaluated (or a part of the average is).")
    return note + "\n\n" + markdown_table(t, index=True, floats={c: lambda v: f"{v:.4f}" for c in t.columns})


def _signal_section(data: ExperimentData, paired: PairedScores) -> str:
    t = tables.signal_noise_table(data, paired)
    if not len(t):
        return "No metric was measured on the variants' final stages."
    note = ("Per metric, over the variants' final stages: *seed_std* = mean over variants with ≥ 2 seeds of the "
            "standard deviation across seeds; *spread* = max − min of the variants' means; *snr* = spread over "
            "the pooled seed standard deviation (Heineman et al. 2025, \"Signal and Noise\"). \"missing\" = no "
            "variant has 2 seeds. An snr well above 1 means the metric separates the variants beyond seed noise.")
    return note + "\n\n" + markdown_table(t, floats={"seed_std": lambda v: f"{v:.4g}", "spread": lambda v: f"{v:.4g}",
                                                     "snr": lambda v: f"{v:.2f}"})


def _scores_section(data: ExperimentData, scores: pd.DataFrame) -> str:
    wide = tables.score_table(data, scores)
    if not len(wide):
        return "No variants."
    if all(c == "status" for c in wide.columns):
        return "No run has evaluation results (eval.json); scores are missing.\n\n" + markdown_table(wide, index=True)
    s = scores.dropna(subset=["category"])
    cell = [("missing" if not math.isfinite(r.score) else
             f"{r.score:.4f} {_ci(r.ci_low, r.ci_high, r.interval, '{:.4f}')}") for r in s.itertuples()]
    wide = (s.assign(cell=cell).pivot_table(index=["variant", "stage_index", "stage"], columns="category",
                                             values="cell", aggfunc="first", sort=False))
    wide = wide[tables._categories(wide.columns)]
    wide.columns.name = None
    note = ("Mean over each category's benchmarks of their primary metric (and over seeds) with its 95% "
            "t interval (examples and pooled seed noise); \"missing\" = the run has no evaluation.")
    return note + "\n\n" + markdown_table(wide, index=True)


def _change_section(data: ExperimentData, paired: PairedScores, baseline: str) -> str:
    rel = tables.relative_change_table(data, baseline, paired=paired)
    if "note" in rel.attrs:
        return f"Relative change not computed: {rel.attrs['note']}."
    if not len(rel):
        return f"No variant besides the baseline {baseline!r}."
    show = rel.assign(
        **{"change %": rel["change"],
           "95% CI": [_ci(lo, hi, why if isinstance(why, str) else "–")
                      for lo, hi, why in zip(rel["ci_low"], rel["ci_high"], rel["interval"])]})
    show = show[["variant", "category", "change %", "95% CI", "score", "baseline_score", "n_benchmarks",
                 "n_examples", "n_seeds", "status"]]
    note = (f"Primary metrics. Final stage of each variant against the final stage of `{baseline}`: "
            f"100 × (score − baseline) / baseline. {INTERVAL_NOTE} Accuracy on few examples is noisy, so see "
            f"the Findings for the continuous metrics. These per-row intervals are not corrected for "
            f"multiplicity.")
    return note + "\n\n" + markdown_table(show, floats={"change %": lambda v: f"{v:+.1f}",
                                                        "score": lambda v: f"{v:.4f}",
                                                        "baseline_score": lambda v: f"{v:.4f}",
                                                        "n_examples": lambda v: f"{v:.0f}"})


def _heldout_section(data: ExperimentData, paired: PairedScores) -> str:
    h = tables.heldout_scores(data, paired=paired)
    if not len(h):
        return "No run has a held-out evaluation (heldout/step_<N>.json)."
    show = h.assign(**{"95% CI": [_ci(lo, hi, why, "{:.4f}")
                                  for lo, hi, why in zip(h["ci_low"], h["ci_high"], h["interval"])]})
    show = show[["variant", "family", "bpb", "95% CI", "n_seeds", "seed_std"]]
    return ("Bits per UTF-8 byte of each family's held-out set at the end of each variant's final stage "
            "(mean over seeds; t interval over documents and the pooled seed noise).\n\n"
            + markdown_table(show, floats={"bpb": lambda v: f"{v:.4f}", "seed_std": lambda v: f"{v:.4f}"}))


def _law_section(data: ExperimentData, resamples: int) -> str:
    from codemix.analysis import law_experiment as le

    rep = le.report_laws(data, resamples=min(resamples, 400))
    if "error" in rep:
        return f"No mixture law: {rep['error']}."
    runs = rep["runs"]
    lines = [(f"Laws fitted to the {len(runs)} from-scratch runs at {runs['token_budget'].iloc[0]:.4g} tokens "
              f"over the shares of {', '.join(le.share_columns(runs))} (`codemix law fit`; "
              "codemix/analysis/mixture_law.py): the exponential mixing law L = c + k·exp(Σ t_j r_j) of Ye et al. "
              "2024, the last varying family's t fixed at 0 (shares sum to 1). Intervals: 95%, bootstrap laws with "
              "the mixture points fixed (noise at the seeds' pooled variance around each point, else residuals). "
              "*LOO* = root mean square error predicting each interior mixture left out (all its seeds); the "
              "form with the lower LOO predicts unseen mixtures inside the sweep better; *LOO ends* is the same "
              "for the sweep's end points, predicted by extrapolation. *fit*: the lack-of-fit F test of the "
              "point means against the seeds' scatter; a **MISFIT** law's optimum and intervals are not to be "
              "trusted, and `codemix law propose` refuses it. The optimum is searched within the shares the "
              "runs cover."), ""]
    rows = []
    for t, law in rep["laws"].items():
        opt = rep["optimum"][t]
        params = "; ".join(f"{n} {v:.4g} [{lo:.4g}, {hi:.4g}]" for n, (v, lo, hi) in law.param_intervals().items())
        shares = ", ".join(f"{f} {v:.2f} [{a:.2f}, {b:.2f}]" for f, v, a, b in
                           zip(opt.families, opt.shares, opt.shares_low, opt.shares_high) if f in law.varying)
        v, lo, hi = opt.predicted[t]
        rows.append({"target": t, "points": law.n_points, "runs": law.n_runs, "parameters": params,
                     "LOO exp": rep["loo"][t]["exp"], "LOO linear": rep["loo"][t]["linear"],
                     "LOO ends (exp)": law.loo_vertex, "fit": law.fit_summary(),
                     "optimum": f"{le.default_sense(t)}: {shares}", "predicted": f"{v:.4f} [{lo:.4f}, {hi:.4f}]"})
    lines.append(markdown_table(pd.DataFrame(rows)) if rows else "No target could be fitted.")
    for t, law in rep["laws"].items():
        if law.misfit:
            lines.append(f"\n- **`{t}`: the exp law does not fit.** {law.fit_summary()}.")
    for t, why in rep["errors"].items():
        lines.append(f"\n- `{t}`: no law ({why})")
    pts = [p.assign(target=t) for t, p in rep["points"].items()]
    if pts:
        p = pd.concat(pts, ignore_index=True)
        p = p.assign(**{"measured (95%)": [f"{m:.4f} {_ci(a, b, w, '{:.4f}')}" for m, a, b, w in
                                           zip(p["measured"], p["low"], p["high"], p["interval"])],
                        "law (95% band)": [f"{m:.4f} [{a:.4f}, {b:.4f}]" for m, a, b in
                                           zip(p["predicted"], p["pred_low"], p["pred_high"])]})
        cols = ["target", "mixture", *le.share_columns(runs), "n_seeds", "measured (95%)", "law (95% band)"]
        lines += ["", ("The fitted points (measured interval: bootstrap over examples/documents and seeds, else a t "
                  "interval over seeds):"), "", markdown_table(p[cols], floats={c: lambda v: f"{v:.3f}"
                                                                             for c in le.share_columns(runs)})]
    pv = rep["proposals"]
    lines += ["", ("**Predicted vs measured** (mixtures proposed by `codemix law propose` and trained here; the "
              "prediction is the one stored when the mixture was proposed):"), ""]
    if len(pv):
        show = pv.assign(**{"predicted (95%)": [f"{m:.4f} [{a:.4f}, {b:.4f}]" for m, a, b in
                                                zip(pv["predicted"], pv["pred_low"], pv["pred_high"])],
                            "measured (95%)": [f"{m:.4f} {_ci(a, b, w, '{:.4f}')}" for m, a, b, w in
                                               zip(pv["measured"], pv["low"], pv["high"], pv["interval"])],
                            "measured − predicted": pv["measured"] - pv["predicted"],
                            "mean inside band": ["yes" if x else "no" for x in pv["inside"]]})
        lines.append(markdown_table(show[["mixture", "kind", "target", "predicted (95%)", "measured (95%)",
                                          "measured − predicted", "n_seeds", "mean inside band"]],
                                    floats={"measured − predicted": lambda v: f"{v:+.4f}"}))
        lines.append("\nThe measured interval also holds the sampling of the held-out documents or benchmark "
                     "examples, which every run shares; the law's band holds only the run-to-run scatter.")
    else:
        lines.append("None trained yet: `codemix law propose DIR --objective 'min val/text/bpb' --output "
                     "gin/mixtures/NAME.gin`, then add a stage (\"init\", \"NAME\", TOKENS) to the experiment.")
    return "\n".join(lines)


def _runs_section(data: ExperimentData) -> str:
    cols = ["run", "stage", "status", "final_step", "steps", "tokens", "final_loss", "has_eval"]
    r = data.runs[[c for c in cols if c in data.runs.columns]]
    return markdown_table(r, floats={"tokens": lambda v: f"{v:.4g}", "final_loss": lambda v: f"{v:.4f}"})


def _missing_section(data: ExperimentData) -> str:
    if not data.missing:
        return "Nothing is missing: every planned run finished and was evaluated."
    lines = [f"{len(data.missing)} run(s) are missing or incomplete; their cells read \"missing\".", ""]
    for m in data.missing:
        lines.append(f"- `{m['run']}` ({', '.join(m['variants']) or 'no variant'}): {m['problem']}")
    return "\n".join(lines)


def _shares_section(data: ExperimentData) -> str:
    s = tables.shares_table(data)
    if not len(s):
        return "No run has logged its token counts yet."
    return markdown_table(s, floats={"requested": lambda v: f"{v:.3f}", "realized": lambda v: f"{v:.3f}",
                                     "tokens": lambda v: f"{v:.4g}"})


# name, title, what is absent when it is not drawn, function, whether it takes the category scores
PLOTS = (
    ("loss_curves", "Training loss per source", "no run has logged metrics", plots.loss_curves, False),
    ("heldout_curves", "Held-out bits per byte per family", "no run has a held-out evaluation",
     plots.heldout_curves, False),
    ("category_bars", "Category scores per variant (final stage)", "no evaluated run", plots.category_bars, True),
    ("sweep_curve", "Code-share sweep: continuous metrics", "no evaluated code_p<N> variants", plots.sweep_curve,
     True),
    ("heldout_sweep", "Code-share sweep: held-out bits per byte", "no code_p<N> variant with a held-out evaluation",
     plots.heldout_sweep, False),
    ("cooldown_effect", "Effect of cooldown", "no evaluated cooldown with an evaluated stage before it",
     plots.cooldown_effect, True),
    ("mixture_law", "Mixture law: runs, fitted law and predicted optimum",
     "no law fitted over exactly two varying families", plots.mixture_law, False),
)


def _guard(name: str, fn: Callable[[], str]) -> str:
    # The report is written at the end of a long experiment: one broken
    # section must not cost the others.
    try:
        return fn()
    except Exception as e:
        log.exception("report section %s failed", name)
        return f"_This section could not be built: {type(e).__name__}: {e}_"


def _corpora_section(data: ExperimentData) -> str:
    """Which corpus (fingerprint) and which declared sources the runs trained on, per family."""
    c = data.corpora
    if not len(c):
        return "The runs record no corpus provenance (run_info.json `corpora`; runs from before it was kept)."
    g = c.groupby(["family", "config", "fingerprint", "sources"], dropna=False, sort=False)["run"].count()
    show = g.reset_index().rename(columns={"run": "runs"})
    note = ("Each training family's corpus as the runs recorded it: a fingerprint covers the corpus options "
            "and every declared source with its version and file list, so a run with another fingerprint "
            "trained on other data.")
    many = show.groupby("family").size()
    if (many > 1).any():
        note += (" **More than one corpus for** " + ", ".join(f"`{f}`" for f in many[many > 1].index)
                 + ": comparisons across those runs mix a data change into the effect.")
    return note + "\n\n" + markdown_table(show)


def write_report(experiment_dir: str, baseline: str = "text_only", resamples: int = 2000) -> str:
    """Write DIR/report.md and DIR/report/*.png; returns the report's path."""
    from codemix import storage

    storage.check(experiment_dir)  # a gs:// bucket that can't be used: one StorageError
    root = Path(experiment_dir)
    data = load_experiment(root)
    img_dir = root / "report"
    img_dir.mkdir(parents=True, exist_ok=True)
    paired = PairedScores.of(data)
    try:
        scores = tables.category_scores(data, paired=paired)
    except Exception:
        # Each section then recomputes and reports its own failure.
        log.exception("category scores failed")
        scores = None
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    missing = f" {len(data.missing)} run(s) missing or incomplete (see Missing)." if data.missing else ""
    parts = [
        f"# Experiment report: {data.name}",
        "",
        (f"Written {now} from `{root}`. Baseline variant: `{baseline}`. "
         f"{len(data.variants)} variants, {len(data.runs)} runs.{missing}"),
        "",
        "## Findings", "", _guard("findings", lambda: _findings_section(data, paired)), "",
        "### Held-out bits per byte against the baseline", "",
        _guard("heldout findings", lambda: _heldout_findings_section(data, paired, baseline)), "",
        "## Table 2: scores per variant and stage", "", _guard("table 2", lambda: _study_section(data, scores)), "",
        "## Signal and noise", "", _guard("signal", lambda: _signal_section(data, paired)), "",
        "## Category scores with 95% intervals", "", _guard("scores", lambda: _scores_section(data, scores)), "",
        f"## Relative change against `{baseline}` (%)", "",
        _guard("change", lambda: _change_section(data, paired, baseline)), "",
        "## Held-out bits per byte per variant", "",
        _guard("heldout", lambda: _heldout_section(data, paired)), "",
        "## Mixture law", "", _guard("mixture law", lambda: _law_section(data, resamples)), "",
        *(["## Do the small runs decide?", "",
           _guard("ladder", lambda: ladder_report.section(data, img_dir, markdown_table, min(resamples, 300))), ""]
          if ladder_report.is_ladder(data) else []),
        "## Missing", "", _guard("missing", lambda: _missing_section(data)), "",
        "## Runs", "", _guard("runs", lambda: _runs_section(data)), "",
        "## Realized mixture shares", "", _guard("shares", lambda: _shares_section(data)), "",
        "## Corpora", "", _guard("corpora", lambda: _corpora_section(data)), "",
        "## Time per phase", "", _guard("phases", lambda: phases.markdown(root)), "",
        "## Plots", "",
    ]
    for name, title, absent, fn, takes_scores in PLOTS:
        png = img_dir / f"{name}.png"
        if png.exists():
            png.unlink()  # never show a stale plot from an earlier report

        def draw(fn=fn, png=png, title=title, absent=absent, name=name, takes_scores=takes_scores) -> str:
            out = fn(data, png, scores) if takes_scores else fn(data, png)
            return f"![{title}](report/{name}.png)" if out else f"_Not drawn: {absent}._"

        parts += [f"### {title}", "", _guard(name, draw), ""]
    path = root / "report.md"
    path.write_text("\n".join(parts))
    log.info("wrote %s", path)
    return str(path)
