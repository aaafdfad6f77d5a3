"""The experiment matrix expands into the expected runs and parents."""
import pytest

import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
from codemix import config as cm_config
from codemix.experiments import runner
from codemix.experiments.matrix import Stage, Variant, expand, study_matrix

# paper.gin requires its runtime (Experiment.runtime_gin = %gin.REQUIRED).
PAPER_RUNTIME = ['Experiment.runtime_gin = "gin/runtime/tpu_v4.gin"']


def test_paper_matrix_runs_and_parents():
    exp = runner.load_experiment("gin/experiments/paper.gin", PAPER_RUNTIME)
    runs = {r.name: r for r in expand(exp.variants)}
    assert len(exp.variants) == 12 + 6 + 4
    # 3 core inits + 6 sweep + 4 quality inits, 2 continues, 4 x 2 cooldowns
    # inits: text 400B, balanced 400B, balanced 200B, code 200B; 6 sweep; 4 quality
    assert sum(r.stage.kind == "init" for r in runs.values()) == 14
    assert sum(r.stage.kind == "continue" for r in runs.values()) == 2
    assert sum(r.stage.kind == "cooldown" for r in runs.values()) == 8
    assert len(runs) == 24
    bt = runs["init-balanced-200B__continue-continue_text-200B"]
    assert bt.parent == "init-balanced-200B" and bt.stage.tokens == 200e9
    cd = runs["init-code_init-200B__continue-continue_text-200B__cooldown-cooldown_without_code-40B"]
    assert cd.parent == "init-code_init-200B__continue-continue_text-200B" and cd.stage.tokens == 40e9
    assert runs["init-text_only-400B"].stage.tokens == 400e9  # same pre-cooldown tokens
    assert set(runs["init-balanced-200B"].variants) == {
        "balanced_text", "balanced_text+cooldown_code", "balanced_text+cooldown_nocode"}
    assert set(runs["init-balanced-400B"].variants) == {
        "balanced_only", "balanced_only+cooldown_code", "balanced_only+cooldown_nocode"}
    order = [r.name for r in expand(exp.variants)]
    for r in runs.values():
        if r.parent:
            assert order.index(r.parent) < order.index(r.name)


def test_paper_plan_derives_steps_and_flops():
    exp = runner.load_experiment("gin/experiments/paper.gin", PAPER_RUNTIME)
    rows = {r["run"]: r for r in runner.plan(exp, exp.variants)}
    row = rows["init-balanced-200B"]
    assert row["steps"] == -(-200e9 // (512 * 2048))
    assert row["flops"] == pytest.approx(6 * 470e6 * 200e9, rel=0.35)  # 6N + attention


def test_chain_must_start_with_init():
    with pytest.raises(ValueError, match="first stage of a chain must be 'init'"):
        Variant("bad", (Stage("continue", "text_only", 1.0),))
    with pytest.raises(ValueError, match="kind 'warmup'"):
        Stage("warmup", "text_only", 1.0)


def test_shared_prefixes_train_once():
    a = Variant("a", (Stage("init", "m", 1.0),))
    b = Variant("b", (Stage("init", "m", 1.0), Stage("cooldown", "c", 1.0)))
    runs = expand([a, b])
    assert [r.name for r in runs] == ["init-m-1", "init-m-1__cooldown-c-1"]
    assert runs[0].variants == ("a", "b")


def test_study_matrix_groups():
    cm_config.parse([], finalize=False)
    only_sweep = study_matrix(init_tokens=10, cooldown_tokens=2, groups=["sweep"])
    assert [v.name for v in only_sweep] == [f"code_p{p}" for p in (0, 25, 50, 75, 90, 100)]
    with pytest.raises(ValueError, match="group 'bogus'"):
        study_matrix(init_tokens=10, cooldown_tokens=2, groups=["bogus"])


def test_seeds_give_each_seed_its_own_chain():
    v = Variant("bt", (Stage("init", "balanced", 1e3), Stage("continue", "continue_text", 1e3)))
    runs = expand([v], seeds=(0, 1))
    names = [r.name for r in runs]
    assert names == ["init-balanced-1K", "init-balanced-1K__seed1",
                     "init-balanced-1K__continue-continue_text-1K",
                     "init-balanced-1K__continue-continue_text-1K__seed1"]
    by = {r.name: r for r in runs}
    assert by[names[3]].parent == "init-balanced-1K__seed1" and by[names[3]].seed == 1
    assert by[names[2]].parent == "init-balanced-1K" and by[names[2]].seed == 0


def test_empty_or_repeated_seeds_are_refused():
    v = Variant("t", (Stage("init", "text_only", 1e3),))
    with pytest.raises(ValueError, match=r"Experiment.seeds is empty"):
        expand([v], seeds=())
    with pytest.raises(ValueError, match=r"repeats a seed"):
        expand([v], seeds=(1, 1))
