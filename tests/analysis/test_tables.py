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
    assert share["requested"] == 0.75 and share["realized"] == pytest.approx(800 / 1024)
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
    assert k["ci_low"] == pytest.approx(0.2) and k["ci_high"] == pytest.approx(0.3)


def test_scores_use_primary_metrics_only(data):
    scores = tables.category_scores(data)
    assert _row(scores, variant="code_p50", category="reasoning")["score"] == pytest.approx(0.605)
    one_seed = _row(scores, variant="code_p50", category="knowledge")
    # one seed: the evaluation's own interval of the category mean
    assert (one_seed["ci_low"], one_seed["ci_high"]) == pytest.approx((0.2, 0.3))
    wide = tables.score_table(data)
    assert list(wide.columns) == ["reasoning", "knowledge", "status"]
    assert wide.loc[("cooled", 0, "init"), "reasoning"] == pytest.approx(0.4)
    assert np.isnan(wide.loc[("cooled", 1, "cooldown"), "knowledge"])


def test_relative_change_against_baseline(data):
    rel = tables.relative_change_table(data, baseline="text_only", resamples=4000)
    r = _row(rel, variant="code_p50", category="reasoning")
    assert (r["change"], r["ci_low"], r["ci_high"]) == pytest.approx((10.0, 10.0, 10.0))
    k = _row(rel, variant="code_p100", category="knowledge")  # .20 vs seeds .20/.30
    assert (k["change"], k["ci_low"], k["ci_high"]) == pytest.approx((-20.0, -100 / 3, 0.0))
    assert k["baseline_seeds"] == 2
    cooled = _row(rel, variant="cooled", category="reasoning")
    assert cooled["change"] == pytest.approx(100 * (0.6 - 0.55) / 0.55)
    assert _row(rel, variant="cooled", category="knowledge")["status"] == "missing"
    assert "text_only" not in set(rel["variant"])


def test_missing_baseline_is_explained_not_raised(data):
    rel = tables.relative_change_table(data, baseline="nope")
    assert len(rel) == 0 and "not part of this experiment" in rel.attrs["note"]


def test_sweep_and_cooldown_points(data):
    pts = plots.sweep_points(data)
    reasoning = pts[pts["category"] == "reasoning"]
    assert list(reasoning["code_percent"]) == [0, 50, 100]
    assert list(reasoning["score"]) == pytest.approx([0.55, 0.605, 0.44])
    pairs = plots.cooldown_pairs(data)
    r = _row(pairs, variant="cooled", category="reasoning")
    assert (r["before"], r["after"]) == pytest.approx((0.4, 0.6))


def test_variant_loss_curves_lay_stages_end_to_end(data):
    c = plots.variant_curves(data)
    cooled = c[(c["variant"] == "cooled") & (c["source"] == "all")]
    assert list(cooled["variant_tokens"]) == [256, 512, 768, 1024, 1280, 1536, 1792, 2048]


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
    rel = tables.relative_change_table(data, resamples=200)
    assert set(rel[rel["status"] == "missing"]["variant"]) == {"code_p50", "code_p100", "cooled"}
