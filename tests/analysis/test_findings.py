"""The study's claims against experiments with known truth (tests/analysis/synthetic.py `write_study`)."""
import json
import math

import numpy as np
import pytest

from codemix.analysis import findings, load_experiment, stats
from codemix.analysis.findings import AGREES, CANT_TELL, CONTRADICTS, MISSING
from tests.analysis.synthetic import write_study

SMALL = {"seeds": 2, "n_examples": 150, "n_docs": 60}

# Every claim planted in the paper's direction. balanced_text's knowledge gain is
# also in the cooldown's baseline, so the cooldown plants a larger one on top.
AGREEING = {
    "code_text": {"reasoning": 0.3, "heldout:text": -0.2},  # held-out: bpb x (1 - effect)
    "balanced_text": {"knowledge": 0.3},
    "code_p25": {"reasoning": 0.3},
    "code_p100": {"reasoning": -0.3, "knowledge": -0.3, "heldout:code_web": 0.3},
    "quality_synthetic": {"reasoning": 0.3, "code": 0.3},
    "balanced_text+cooldown_code": {"reasoning": 0.3, "knowledge": 0.6, "code": 0.3},
}
# Every claim planted against the paper.
OPPOSITE = {
    "code_text": {"reasoning": -0.3},
    "text_only": {"knowledge": 0.3},  # beats balanced_text
    "code_p50": {"reasoning": 0.3},  # beats code_p25
    "code_p100": {"reasoning": 0.3, "knowledge": 0.3},
    "quality_synthetic": {"reasoning": -0.3, "code": -0.3},
    "balanced_text+cooldown_code": {"reasoning": -0.3, "knowledge": -0.3, "code": -0.3},
}


def _claims(root, **kw):
    return findings.claim_findings(load_experiment(root), **kw)


@pytest.fixture(scope="module")
def agreeing(tmp_path_factory):
    return load_experiment(write_study(tmp_path_factory.mktemp("agree"), AGREEING, **SMALL))


def test_holm_adjusts_p_values_as_a_hand_computation():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 -> max(0.06, 0.04) = 0.06
    adj, reject = stats.holm([0.01, 0.04, 0.03, 0.005, float("nan")])
    np.testing.assert_allclose(adj[:4], [0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adj[4]) and list(reject) == [True, False, False, True, False]


def _row(p, side=1.0, measured=True, lo=-1.0, hi=1.0):
    return {"p_value": p, "_side": side, "_measured": measured, "ci_low": lo, "ci_high": hi, "note": "n"}


def test_verdicts_come_from_holm_over_the_whole_table():
    rows = [_row(0.001, +1, lo=1, hi=2), _row(0.002, -1, lo=-2, hi=-1), _row(0.03, +1, lo=0.1, hi=3),
            _row(0.001, +1, measured=False), _row(0.5)]
    findings._decide(rows)
    assert [r["verdict"] for r in rows] == [AGREES, CONTRADICTS, CANT_TELL, findings.ONE_SEED, CANT_TELL]
    # 0.03 x 2 (third smallest of 4 testable) = 0.06 > 0.05: its own interval excluded 0, the table's doesn't
    assert "not after Holm's correction over the table's 4 tests" in rows[2]["note"]
    assert rows[0]["p_holm"] == pytest.approx(0.004) and math.isnan(rows[3]["p_holm"])


def test_pure_noise_gives_cant_tell_verdicts(tmp_path):
    # Two noise draws, 20 verdicts. Each verdict is wrong on noise 1 time in 20 by
    # design (these draws hold one such: seed 0's code→text comparison); the rate
    # over many draws is test_noise_verdicts_err_at_about_the_nominal_rate.
    verdicts = []
    for s in (0, 1):
        f = _claims(write_study(tmp_path / f"noise{s}", rng_seed=s, **SMALL))
        assert len(f) == 10 and not (f["verdict"] == MISSING).any()
        verdicts += list(f["verdict"])
    assert verdicts.count(CANT_TELL) >= 18, verdicts
    assert AGREES not in verdicts[:10] and CONTRADICTS not in verdicts[1:10]


@pytest.mark.slow
def test_null_experiments_rarely_give_any_verdict(tmp_path):
    """Null experiments shaped like the study matrix (2 seeds, every variant the
    same): any "agrees"/"contradicts" in at most 10% of them (Holm: 5% by
    design), and held-out exclusions that survive Holm in at most 10%."""
    any_verdict = any_heldout = n = 0
    for s in range(24):
        data = load_experiment(write_study(tmp_path / f"n{s}", rng_seed=s + 100, **SMALL))
        f = findings.claim_findings(data)
        any_verdict += bool(f["verdict"].isin([AGREES, CONTRADICTS]).any())
        any_heldout += bool(findings.heldout_findings(data)["holds_after_holm"].any())
        n += 1
    print(f"\nnull experiments with any verdict: {any_verdict}/{n}; with a held-out exclusion after Holm: "
          f"{any_heldout}/{n}")
    assert any_verdict <= 3 and any_heldout <= 3, (any_verdict, any_heldout, n)


def test_planted_effects_agree(agreeing):
    f = findings.claim_findings(agreeing)
    assert list(f["verdict"]) == [AGREES] * 10, f[["claim", "category", "improvement", "ci_low", "verdict"]]
    r = f[(f["claim"].str.startswith("code→text")) & (f["category"] == "reasoning")].iloc[0]
    assert r["metric"] == "reasoning prob_correct"
    assert 20 < r["improvement"] < 40 and r["ci_low"] > 0  # +30% planted on prob_correct
    k = f[(f["claim"].str.startswith("100% code")) & (f["category"] == "knowledge")].iloc[0]
    assert k["metric"] == "knowledge bpb (lower is better)"
    assert k["improvement"] < -20 and k["ci_high"] < 0  # bpb 30% higher: a cost
    best = f[f["claim"].str.startswith("25% code")].iloc[0]
    assert "closest of 5" in best["comparison"]


def test_effects_planted_against_the_paper_contradict(tmp_path):
    f = _claims(write_study(tmp_path / "opp", OPPOSITE, **SMALL))
    assert list(f["verdict"]) == [CONTRADICTS] * 10, f[["claim", "category", "improvement", "verdict"]]
    best = f[f["claim"].str.startswith("balanced→text")].iloc[0]
    assert "text_only" in best["comparison"] and "text_only" in best["note"]


def test_missing_variants_give_missing(tmp_path):
    f = _claims(write_study(tmp_path / "few", variants=("text_only", "code_p0", "code_p100"), **SMALL))
    by = {(r.claim.split(":")[0].split(" ")[0], r.category): r for r in f.itertuples()}
    assert by[("code→text", "reasoning")].verdict == MISSING
    assert "not in this experiment: code_text" in by[("code→text", "reasoning")].note
    assert by[("25%", "reasoning")].verdict == MISSING
    assert by[("balanced→text", "knowledge")].verdict == MISSING
    assert by[("100%", "reasoning")].verdict == CANT_TELL  # both present: measured
    assert math.isnan(by[("code→text", "reasoning")].improvement)


def test_cooldown_claim_falls_back_to_the_stage_before_the_cooldown(tmp_path):
    f = _claims(write_study(tmp_path / "cool", {"balanced_text+cooldown_code": {"code": 0.3}},
                            variants=("balanced_text+cooldown_code",), **SMALL))
    code = f[f["claim"].str.startswith("a cooldown") & (f["category"] == "code")].iloc[0]
    assert code["comparison"] == "`balanced_text+cooldown_code` vs its stage before the cooldown"
    assert code["verdict"] == AGREES


def test_without_per_example_values_findings_are_missing_not_narrow(tmp_path):
    f = _claims(write_study(tmp_path / "nope", AGREEING, per_example=False, **SMALL))
    assert (f["verdict"] == MISSING).all()
    measured = f[~f["note"].str.startswith("not in")]
    assert set(measured["note"]) == {"missing (no per-example values)"}
    assert f["ci_low"].isna().all()


def test_primary_metric_is_used_when_the_continuous_one_is_absent(tmp_path):
    root = write_study(tmp_path / "acc", AGREEING, variants=("text_only", "code_text"), **SMALL)
    for ev in (root / "runs").glob("*/eval.json"):
        doc = json.loads(ev.read_text())
        doc["records"] = [r for r in doc["records"] if r["metric"] not in ("prob_correct", "bpb")]
        for v in doc["per_example"].values():
            v.pop("prob_correct", None)
            v.pop("bpb", None)
        ev.write_text(json.dumps(doc))
    f = _claims(root)
    r = f[f["claim"].str.startswith("code→text")].iloc[0]
    assert r["metric"] == "reasoning primary" and r["verdict"] in (AGREES, CANT_TELL)


def test_heldout_findings_count_the_comparisons_that_exclude_zero(agreeing):
    h = findings.heldout_findings(agreeing)
    assert h.attrs["baseline"] == "text_only"
    assert len(h) == (len(agreeing.variants) - 1) * 2  # families text and code_web
    row = h[(h["variant"] == "code_p100") & (h["family"] == "code_web")].iloc[0]  # bpb x 0.7 planted
    assert row["change"] == pytest.approx(-30, abs=5) and row["ci_high"] < 0 and row["excludes_zero"]
    row = h[(h["variant"] == "code_text") & (h["family"] == "text")].iloc[0]  # bpb x 1.2 planted
    assert row["change"] == pytest.approx(20, abs=5) and row["ci_low"] > 0 and row["excludes_zero"]
    n = int(h["excludes_zero"].sum())
    assert findings.heldout_summary(h).startswith(f"{n} of {len(h)} held-out comparisons")
    assert n >= 2


def test_heldout_baseline_falls_back_to_the_first_variant(agreeing):
    assert findings.heldout_baseline(agreeing, "nope") == agreeing.variants[0]


def test_study_reasoning_copy_matches_the_eval_suite():
    from codemix.eval import tasks

    assert findings.STUDY_REASONING == tasks.STUDY_REASONING
    assert {t.lower() for t in findings.UNAVAILABLE_REASONING} == set(tasks.STUDY_REASONING_UNAVAILABLE)


def test_improvement_sign_follows_the_metric_direction(agreeing):
    from codemix.analysis.paired import PairedScores, continuous, final_runs

    p = PairedScores(agreeing)
    c = p.compare(final_runs(agreeing, "code_p100"), final_runs(agreeing, "code_p0"), continuous("knowledge"))
    assert c.change > 0  # bpb went up ...
    imp, lo, hi = c.improvement
    assert imp == -c.change and (lo, hi) == (-c.high, -c.low)  # ... which is a loss
    assert np.isfinite([lo, hi]).all()
