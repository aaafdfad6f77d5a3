"""The study's headline claims, checked against one experiment.

Each claim of Aryabumi et al. 2024 (arXiv 2408.10914) is a comparison of
variants of codemix/experiments/matrix.py `study_matrix` on a category. It is
measured on the category's best-signal metric that both sides have
(`CATEGORY_MEASURES`: mean prob_correct over the reasoning benchmarks; gold
bits per byte over the knowledge and code benchmarks; each benchmark's
primary metric only when the continuous one is absent), as a relative
improvement in percent: ``100 * (V - B) / B`` for higher-is-better metrics,
``100 * (B - V) / B`` for bits per byte, so a positive number always means
"the variant is better", the sign the paper's percentages use. Magnitudes are
not comparable with the paper's (its are on accuracy at 470M-2.8B
parameters); the sign is what is tested.

The 95% interval is the paired bootstrap of codemix/analysis/paired.py
(examples paired by id, seeds independent per variant). Verdict rules:

  pairwise claim ("V improves C by x% over B", or costs it for x < 0):
    agrees        the interval excludes 0 on the paper's side;
    contradicts   it excludes 0 on the other side;
    can't tell at this scale   it contains 0;
    missing       a variant, its runs, the metric or per-example values are absent.
  "V is best for C" among candidates: V is compared with each of the k other
  present candidates.
    agrees        every 95% interval excludes 0 in V's favour (all k must
                  hold at once, so the claim's error rate stays at 5%);
    contradicts   some candidate is better than V with a (1 - 0.05 / k)
                  interval excluding 0 (Bonferroni: with 5 rivals, "any one
                  of them" at 95% each would fire on noise ~1 time in 5);
    can't tell at this scale   otherwise;
    missing       V, or every other candidate, is absent.

`heldout_findings` adds per-family held-out bits-per-byte comparisons of
every variant against a baseline: the quantity with the most signal at small
scale.
"""
from __future__ import annotations

import dataclasses
import math

import pandas as pd

from codemix.analysis.load import ExperimentData
from codemix.analysis.paired import (
    Comparison,
    Measure,
    PairedScores,
    continuous,
    families,
    final_runs,
    primary,
    stage_runs,
)
from codemix.analysis.paired import heldout as heldout_measure

AGREES, CONTRADICTS, CANT_TELL, MISSING = "agrees", "contradicts", "can't tell at this scale", "missing"
CATEGORY_MEASURES = {c: (continuous(c), primary(c)) for c in ("reasoning", "knowledge", "code")}
SWEEP = tuple(f"code_p{p}" for p in (0, 25, 50, 75, 90, 100))
# The study's 11 reasoning tasks: the 9 codemix/eval/tasks.py ships (its group
# "study_reasoning"; copied so that a report needs no TensorFlow import, and
# tests/analysis/test_findings.py checks the copy) and the 2 no offline package has.
STUDY_REASONING = ("boolq", "piqa", "sciq", "siqa", "cb", "copa", "hellaswag", "winogrande", "arc_easy")
UNAVAILABLE_REASONING = ("QuAC", "StoryCloze")


@dataclasses.dataclass(frozen=True)
class Claim:
    """One headline claim of the study.

    kind "pair": `variant` vs `baseline`, with the paper's percent change per
    category in `paper`. kind "best": `variant` beats every other of
    `candidates` on each category of `paper` (values None).
    """

    key: str
    text: str
    kind: str
    variant: str
    baseline: str | None = None
    candidates: tuple[str, ...] = ()
    paper: tuple[tuple[str, float | None], ...] = ()


CLAIMS = (
    Claim("code_text_reasoning", "code→text vs text-only: NL reasoning +8.8%", "pair", "code_text", "text_only",
          paper=(("reasoning", 8.8),)),
    Claim("balanced_text_knowledge", "balanced→text is best for world knowledge", "best", "balanced_text",
          candidates=("text_only", "balanced_only", "balanced_text", "code_text"), paper=(("knowledge", None),)),
    Claim("code_p25_reasoning", "25% code is best for reasoning", "best", "code_p25", candidates=SWEEP,
          paper=(("reasoning", None),)),
    Claim("code_p100_cost", "100% code costs 18.3% reasoning and 86% knowledge", "pair", "code_p100", "code_p0",
          paper=(("reasoning", -18.3), ("knowledge", -86.0))),
    Claim("synthetic_code", "synthetic code gives +9% reasoning and +44.9% code", "pair", "quality_synthetic",
          "quality_web", paper=(("reasoning", 9.0), ("code", 44.9))),
    Claim("cooldown_code", "a cooldown with code gives +3.6% reasoning, +10.1% knowledge, +20% code",
          "pair", "balanced_text+cooldown_code", "balanced_text",
          paper=(("reasoning", 3.6), ("knowledge", 10.1), ("code", 20.0))),
)

COLUMNS = ["claim", "category", "paper", "comparison", "metric", "improvement", "ci_low", "ci_high",
           "verdict", "note", "min_seeds"]


def verdict(low: float, high: float, paper_sign: float) -> str:
    """Verdict of an improvement interval [low, high] against the paper's sign (+1 or -1)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return MISSING
    if paper_sign * low > 0 and paper_sign * high > 0:
        return AGREES
    if paper_sign * low < 0 and paper_sign * high < 0:
        return CONTRADICTS
    return CANT_TELL


def best_verdict(improvements: list[tuple[float, float]], corrected: list[tuple[float, float]] | None = None) -> str:
    """Verdict of "best" from the target's improvement intervals over each rival.

    `improvements`: 95% intervals (for agrees); `corrected`: the same
    comparisons at the Bonferroni level (for contradicts; default the same).
    """
    corrected = improvements if corrected is None else corrected
    finite = [math.isfinite(lo) and math.isfinite(hi) for lo, hi in improvements]
    if not any(finite):
        return MISSING
    if any(f and hi < 0 for f, (_, hi) in zip(finite, corrected)):
        return CONTRADICTS
    if all(finite) and all(lo > 0 for lo, _ in improvements):
        return AGREES
    return CANT_TELL


def measured(scores: PairedScores, variant_runs, baseline_runs, category: str, resamples: int,
             seed: int, level: float = 0.95) -> Comparison:
    """The comparison on the first of the category's measures that both sides have."""
    first = None
    for m in CATEGORY_MEASURES[category]:
        c = scores.compare(variant_runs, baseline_runs, m, resamples, seed, level)
        if c.status == "ok":
            return c
        first = first or c
    return first


def _cooldown_pair(data: ExperimentData, claim: Claim) -> tuple[str, list[str], list[str]]:
    """(label, variant runs, baseline runs) of the cooldown claim, with its fallbacks."""
    present = set(data.variants)
    candidates = [(claim.variant, claim.baseline)]
    candidates += [(v, v[: -len("+cooldown_code")]) for v in data.variants
                   if v.endswith("+cooldown_code") and v != claim.variant]
    for v, b in candidates:
        if v in present and b in present:
            return f"`{v}` vs `{b}`", final_runs(data, v), final_runs(data, b)
    for v, _ in candidates:  # the cooled variant's own stage before the cooldown
        if v in present:
            last = int(data.chains[data.chains["variant"] == v]["stage_index"].max())
            if last > 0:
                return f"`{v}` vs its stage before the cooldown", final_runs(data, v), stage_runs(data, v, last - 1)
    return f"`{claim.variant}` vs `{claim.baseline}`", [], []


def _missing_row(claim: Claim, category: str, paper: float | None, comparison: str, note: str) -> dict:
    nan = float("nan")
    return {"claim": claim.text, "category": category, "paper": _paper(paper), "comparison": comparison,
            "metric": "missing", "improvement": nan, "ci_low": nan, "ci_high": nan, "verdict": MISSING,
            "note": note}


def _paper(p: float | None) -> str:
    return "best" if p is None else f"{p:+.1f}%"


def _metric_label(m: Measure) -> str:
    return f"{m.label}{'' if m.higher_is_better else ' (lower is better)'}"


def _pair_rows(data, scores, claim, resamples, seed) -> list[dict]:
    if claim.key == "cooldown_code":
        label, vr, br = _cooldown_pair(data, claim)
    else:
        label, vr, br = f"`{claim.variant}` vs `{claim.baseline}`", final_runs(data, claim.variant), \
            final_runs(data, claim.baseline)
    rows = []
    for cat, paper in claim.paper:
        absent = [v for v, r in ((claim.variant, vr), (claim.baseline, br)) if not r]
        if absent:
            rows.append(_missing_row(claim, cat, paper, label, f"not in this experiment: {', '.join(absent)}"))
            continue
        c = measured(scores, vr, br, cat, resamples, seed)
        if c.status != "ok":
            rows.append(_missing_row(claim, cat, paper, label, c.status))
            continue
        imp, lo, hi = c.improvement
        rows.append({"claim": claim.text, "category": cat, "paper": _paper(paper), "comparison": label,
                     "metric": _metric_label(c.measure), "improvement": imp, "ci_low": lo, "ci_high": hi,
                     "verdict": verdict(lo, hi, 1.0 if paper >= 0 else -1.0), "note": c.describe(),
                     "min_seeds": min(c.n_seeds, c.baseline_seeds)})
    return rows


def _best_rows(data, scores, claim, resamples, seed) -> list[dict]:
    rows = []
    target = final_runs(data, claim.variant)
    rivals = [v for v in claim.candidates if v != claim.variant]
    present = [v for v in rivals if final_runs(data, v)]
    label = f"`{claim.variant}` vs {', '.join(f'`{v}`' for v in rivals)}"
    for cat, paper in claim.paper:
        if not target or not present:
            absent = [claim.variant] if not target else rivals
            rows.append(_missing_row(claim, cat, paper, label, f"not in this experiment: {', '.join(absent)}"))
            continue
        comps = {v: measured(scores, target, final_runs(data, v), cat, resamples, seed) for v in present}
        ok = {v: c for v, c in comps.items() if c.status == "ok"}
        if not ok:
            rows.append(_missing_row(claim, cat, paper, label, next(iter(comps.values())).status))
            continue
        # The closest rival: the one the target beats by the least.
        rival, c = min(ok.items(), key=lambda kv: kv[1].improvement[0])
        imp, lo, hi = c.improvement
        notes = [f"closest rival `{rival}`; " + c.describe()]
        absent = [v for v in rivals if v not in ok]
        if absent:
            notes.append(f"not compared: {', '.join(absent)}")
        level = 1 - 0.05 / len(ok)
        strict = {v: measured(scores, target, final_runs(data, v), cat, resamples, seed, level) for v in ok}
        better = [v for v, x in strict.items() if x.improvement[2] < 0]
        if better:
            notes.append(f"better than `{claim.variant}` at the {100 * level:.1f}% level: {', '.join(better)}")
        v = best_verdict([ok[k].improvement[1:] for k in ok], [strict[k].improvement[1:] for k in ok])
        rows.append({"claim": claim.text, "category": cat, "paper": _paper(paper),
                     "comparison": f"`{claim.variant}` vs `{rival}` (closest of {len(ok)})",
                     "metric": _metric_label(c.measure), "improvement": imp, "ci_low": lo, "ci_high": hi,
                     "verdict": v, "note": "; ".join(notes),
                     "min_seeds": min(min(x.n_seeds, x.baseline_seeds) for x in ok.values())})
    return rows


def claim_findings(data: ExperimentData, resamples: int = 2000, seed: int = 0,
                   scores: PairedScores | None = None) -> pd.DataFrame:
    """One row per (claim, category): measured improvement (%), 95% interval, verdict (module doc)."""
    scores = scores or PairedScores.of(data)
    rows = []
    for claim in CLAIMS:
        fn = _pair_rows if claim.kind == "pair" else _best_rows
        rows += fn(data, scores, claim, resamples, seed)
    return pd.DataFrame(rows, columns=COLUMNS)


def heldout_baseline(data: ExperimentData, baseline: str = "text_only") -> str | None:
    """`baseline` if the experiment has it, else its first variant (None if it has none)."""
    if baseline in data.variants:
        return baseline
    return data.variants[0] if data.variants else None


HELDOUT_COLUMNS = ["variant", "family", "bpb", "baseline_bpb", "change", "ci_low", "ci_high",
                   "excludes_zero", "n_seeds", "baseline_seeds", "status", "note"]


def heldout_findings(data: ExperimentData, baseline: str = "text_only", resamples: int = 2000, seed: int = 0,
                     scores: PairedScores | None = None) -> pd.DataFrame:
    """Per variant (final stage) and held-out family: relative change of bpb against the baseline.

    Negative change = lower bits per byte = better. `attrs["baseline"]` is the
    baseline used (`heldout_baseline`); `attrs["note"]` explains an empty table.
    """
    scores = scores or PairedScores.of(data)
    out = pd.DataFrame(columns=HELDOUT_COLUMNS)
    base = heldout_baseline(data, baseline)
    fams = families(data)
    if base is None or not fams:
        out.attrs["note"] = "no variant has a held-out evaluation" if base else "no variants"
        return out
    base_runs = final_runs(data, base)
    rows = []
    for v in data.variants:
        if v == base:
            continue
        for fam in fams:
            c = scores.compare(final_runs(data, v), base_runs, heldout_measure(fam), resamples, seed)
            rows.append({"variant": v, "family": fam, "bpb": c.score, "baseline_bpb": c.baseline_score,
                         "change": c.change, "ci_low": c.low, "ci_high": c.high,
                         "excludes_zero": c.excludes_zero if c.status == "ok" else False,
                         "n_seeds": c.n_seeds, "baseline_seeds": c.baseline_seeds, "status": c.status,
                         "note": c.describe()})
    out = pd.DataFrame(rows, columns=HELDOUT_COLUMNS)
    out.attrs["baseline"] = base
    return out


def heldout_summary(table: pd.DataFrame) -> str:
    """'k of N held-out comparisons exclude zero (i lower bpb, j higher).'"""
    ok = table[table["status"] == "ok"] if len(table) else table
    if not len(ok):
        return "No held-out comparison could be made."
    ex = ok[ok["excludes_zero"].astype(bool)]
    lower = int((ex["ci_high"] < 0).sum())
    return (f"{len(ex)} of {len(ok)} held-out comparisons have a 95% interval that excludes zero "
            f"({lower} with lower bits per byte than the baseline, {len(ex) - lower} with higher).")


def unresolved(findings: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(claims that can't be told at this scale, claims not measured here), as 'claim (category)'."""
    def names(mask):
        return [f"{r.claim} ({r.category})" for r in findings[mask].itertuples()]
    return names(findings["verdict"] == CANT_TELL), names(findings["verdict"] == MISSING)
