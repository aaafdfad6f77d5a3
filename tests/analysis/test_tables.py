"""Tables and plots of a hand-made experiment (tests/analysis/synthetic.py)."""
import json
import shutil

import numpy as np
import pytest

from codemix.analysis import load_experiment, parse_gin, plots, tables
from tests.analysis.synthetic import write_synthetic


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def data(synthetic):
    return load_experiment(synthetic)


def _row(df, **kw):
    mask = np.ones(len(df), bool)
    for k, v in kw.items():
        mask &= (df[k] == v).to_numpy()
    assert mask.sum() == 1, (kw, df)
    return df[mask].iloc[0]


def test_loader_builds_tidy_tables(data):
    assert data.name == "synthetic" and data.missing == []
    assert data.variants == ["text_only", "code_p0", "code_p50", "code_p100", "cooled"]
    assert set(data.runs["run"]) == set(data.plan["run"])
    assert len(data.metrics) == 7 * 4
    assert set(data.losses["source"]) == {"all", "text", "code_web"}
    share = _row(data.shares, run="init-code_p0-1K", source="text")
    assert share["requested"] == 0.75 and share["realized"] == pytest.approx(0.75)
    assert sorted(data.configs["train.seed"].astype(int)) == [0, 0, 0, 0, 0, 0, 1]


def test_multiline_gin_values_are_joined_and_macros_resolved():
    b = parse_gin("# c\nA.x = 1\nB.y = \\\n    ['a',\n     'b']\nC.z = 'q'\nSEED = 3\ntrain.seed = %SEED\n")
    assert b == {"A.x": "1", "B.y": "['a', 'b']", "C.z": "'q'", "SEED": "3", "train.seed": "3"}


def test_runs_of_one_variant_at_one_stage_are_seeds(data):
    text = data.chains[data.chains["variant"] == "text_only"]
    assert sorted(text["seed"]) == [0, 1] and set(text["stage_index"]) == {0}
    scores = tables.category_scores(data)
    k = _row(scores, variant="text_only", category="knowledge")
    assert k["score"] == pytest.approx(0.25) and k["n_seeds"] == 2
    # seeds .20 and .30 of 100 examples: the interval holds example and seed noise, and the
    # experiment's only seed group (text_only's two seeds) gives the seed term one degree of
    # freedom: t_{0.975, 1} = 12.7 times its standard error
    assert k["interval"] == tables.T_INTERVAL
    assert 0.0 < k["ci_low"] < 0.1 and 0.4 < k["ci_high"] < 0.5


def test_scores_use_primary_metrics_only(data):
    scores = tables.category_scores(data)
    assert _row(scores, variant="code_p50", category="reasoning")["score"] == pytest.approx(0.605)
    one_seed = _row(scores, variant="code_p50", category="knowledge")
    # one seed, 100 examples at .25: the binomial spread (about +-0.085) plus the seed noise
    # that text_only's two seeds measured (pooled), which a one-seed side can't show by itself
    assert one_seed["ci_low"] < 0.165 - 0.1 and one_seed["ci_high"] > 0.335 + 0.1
    wide = tables.score_table(data)
    assert list(wide.columns) == ["reasoning", "knowledge", "status"]
    assert wide.loc[("cooled", 0, "init"), "reasoning"] == pytest.approx(0.4)
    assert np.isnan(wide.loc[("cooled", 1, "cooldown"), "knowledge"])


def test_study_table_has_the_papers_layout(data):
    t = tables.study_table(data)
    assert list(t.columns) == ["reasoning", "knowledge", "NL avg", "code", "total avg", "status"]
    row = t.loc[("code_p50", 0, "init")]
    assert row["NL avg"] == pytest.approx((0.605 + 0.25) / 2)
    assert np.isnan(row["code"]) and np.isnan(row["total avg"])  # no code benchmark here
    assert np.isnan(t.loc[("cooled", 1, "cooldown"), "NL avg"])  # no knowledge


def test_relative_change_against_baseline(data):
    rel = tables.relative_change_table(data, baseline="text_only")
    r = _row(rel, variant="code_p50", category="reasoning")
    # 11 of 200 paired examples differ, all in code_p50's favour
    assert r["change"] == pytest.approx(10.0) and r["interval"] == tables.T_INTERVAL
    assert 0 < r["ci_low"] < 10 < r["ci_high"] < 25
    assert r["n_examples"] == 200
    k = _row(rel, variant="code_p100", category="knowledge")  # .20 vs seeds .20/.30
    assert k["change"] == pytest.approx(-20.0) and k["ci_low"] < -20 < k["ci_high"]
    assert k["baseline_seeds"] == 2
    cooled = _row(rel, variant="cooled", category="reasoning")
    assert cooled["change"] == pytest.approx(100 * (0.6 - 0.55) / 0.55)
    assert _row(rel, variant="cooled", category="knowledge")["status"] == "missing"
    assert "text_only" not in set(rel["variant"])


def test_the_old_demo_case_no_longer_excludes_zero(tmp_path):
    # Issue 14: 2 benchmarks x 8 examples, one seed, reported as -40% [-100, -25].
    from tests.analysis.synthetic import write_run

    bench, prim = {"copa": "reasoning", "arc_easy": "reasoning"}, {"copa": "acc", "arc_easy": "acc"}
    answers = {"text_only": {"copa": [1, 1, 1, 1, 0, 0, 0, 0], "arc_easy": [1, 1, 1, 0, 0, 0, 0, 0]},
               "code_text": {"copa": [1, 1, 0, 0, 1, 0, 0, 0], "arc_easy": [1, 0, 0, 0, 0, 0, 0, 0]}}
    root = tmp_path / "demo"
    for v, per in answers.items():
        pe = {b: {"ids": [f"{b}-{i}" for i in range(8)], "acc": a} for b, a in per.items()}
        write_run(root, f"init-{v}", [v], "init", None, 0, pe, None, bench, prim, "demo")
    (root / "plan.json").write_text(json.dumps([]))
    rel = tables.relative_change_table(load_experiment(root), baseline="text_only")
    r = _row(rel, variant="code_text", category="reasoning")
    assert r["change"] == pytest.approx(100 * (0.25 - 0.4375) / 0.4375)  # -42.9%
    assert r["ci_low"] < 0 <= r["ci_high"]


def test_runs_without_per_example_values_get_no_interval(synthetic, tmp_path):
    root = tmp_path / "exp"
    shutil.copytree(synthetic, root)
    ev = root / "runs" / "init-code_p50-1K" / "eval.json"
    doc = json.loads(ev.read_text())
    del doc["per_example"]
    ev.write_text(json.dumps(doc))
    data = load_experiment(root)
    s = _row(tables.category_scores(data), variant="code_p50", category="reasoning")
    assert s["score"] == pytest.approx(0.605) and np.isnan(s["ci_low"])
    assert s["interval"] == "missing (no per-example values)"
    r = _row(tables.relative_change_table(data), variant="code_p50", category="reasoning")
    assert r["change"] == pytest.approx(10.0) and np.isnan(r["ci_low"])
    assert r["interval"] == "missing (no per-example values)"


def test_signal_to_noise_per_metric(data):
    t = tables.signal_noise_table(data).set_index("metric")
    k = t.loc["knowledge primary (1 benchmark)"]
    # only text_only has two seeds (.20, .30); variant means .25 .25 .25 .20
    assert k["seed_std"] == pytest.approx(np.std([0.2, 0.3], ddof=1))
    assert k["spread"] == pytest.approx(0.05)
    assert k["snr"] == pytest.approx(0.05 / np.std([0.2, 0.3], ddof=1))
    assert t.loc["held-out code_web bpb", "better"] == "lower"
    assert t.loc["reasoning prob_correct (2 benchmarks)", "spread"] == pytest.approx(0.4 * (0.605 - 0.44))


def test_heldout_scores_per_variant_and_family(data):
    h = tables.heldout_scores(data)
    r = _row(h, variant="code_p50", family="code_web")  # documents 1.0-1.4, shifted by -0.4
    assert r["bpb"] == pytest.approx(0.8) and r["ci_low"] < 0.8 < r["ci_high"]
    assert _row(h, variant="text_only", family="text")["n_seeds"] == 2


def test_missing_baseline_is_explained_not_raised(data):
    rel = tables.relative_change_table(data, baseline="nope")
    assert len(rel) == 0 and "not part of this experiment" in rel.attrs["note"]


def test_sweep_and_cooldown_points(data):
    pts = plots.sweep_points(data)
    reasoning = pts[pts["category"] == "reasoning"]
    assert list(reasoning["code_percent"]) == [0, 50, 100]
    assert set(reasoning["metric"]) == {"reasoning prob_correct"}
    assert list(reasoning["score"]) == pytest.approx([0.3 + 0.4 * s for s in (0.55, 0.605, 0.44)])
    knowledge = pts[pts["category"] == "knowledge"]
    assert list(knowledge["score"]) == pytest.approx([1.75, 1.75, 1.8])  # bpb = 2 - acc
    assert (pts["ci_low"] <= pts["score"]).all() and (pts["score"] <= pts["ci_high"]).all()
    held = plots.heldout_sweep_points(data)
    text = held[held["family"] == "text"]
    assert list(text["code_percent"]) == [0, 50, 100]
    assert list(text["bpb"]) == pytest.approx([1.2, 1.0, 1.5])
    pairs = plots.cooldown_pairs(data)
    r = _row(pairs, variant="cooled", category="reasoning")
    assert (r["before"], r["after"]) == pytest.approx((0.4, 0.6))


def test_variant_loss_curves_lay_stages_end_to_end(data):
    c = plots.variant_curves(data)
    cooled = c[(c["variant"] == "cooled") & (c["source"] == "all")]
    assert list(cooled["variant_tokens"]) == [256, 512, 768, 1024, 1280, 1536, 1792, 2048]
    h = plots.heldout_variant_curves(data)
    cooled = h[(h["variant"] == "cooled") & (h["family"] == "text")]
    assert list(cooled["variant_tokens"]) == [1024, 2048]


def test_loss_panels_are_the_sources_trained_on(synthetic, tmp_path):
    root = tmp_path / "exp"
    shutil.copytree(synthetic, root)
    m = root / "runs" / "init-code_p0-1K" / "metrics.jsonl"
    rows = [json.loads(x) for x in m.read_text().splitlines()]
    m.write_text("".join(json.dumps({**r, "tokens/text_hq": 0.0}) + "\n" for r in rows))
    data = load_experiment(root)
    assert plots.loss_sources(data) == ["code_web", "text"]  # no "all", no untrained text_hq


def test_partial_and_missing_runs_are_reported_not_dropped(synthetic, tmp_path):
    root = tmp_path / "exp"
    shutil.copytree(synthetic, root)
    cool = root / "runs" / "init-balanced-1K__cooldown-cool-1K"
    lin = json.loads((cool / "lineage.json").read_text())
    lin["status"] = "running"
    (cool / "lineage.json").write_text(json.dumps(lin))
    (cool / "eval.json").unlink()
    (root / "runs" / "init-code_p50-1K" / "eval.json").unlink()
    shutil.rmtree(root / "runs" / "init-code_p100-1K")  # planned, never started
    data = load_experiment(root)
    problems = {m["run"]: m["problem"] for m in data.missing}
    assert problems == {
        "init-balanced-1K__cooldown-cool-1K": "status 'running' (partial)",
        "init-code_p50-1K": "no eval.json",
        "init-code_p100-1K": "not started",
    }
    assert _row(data.runs, run="init-code_p100-1K")["status"] == "not started"
    wide = tables.score_table(data)
    assert wide.loc[("code_p100", 0, "init"), "status"] == "missing"
    assert np.isnan(wide.loc[("cooled", 1, "cooldown"), "reasoning"])
    rel = tables.relative_change_table(data)
    assert set(rel[rel["status"] == "missing"]["variant"]) == {"code_p50", "code_p100", "cooled"}
