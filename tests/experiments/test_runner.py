"""The runner: lineage, stage semantics, resume, and clear errors."""
import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from codemix.experiments import runner
from codemix.train.metrics import read_metrics

MICRO = "tests/experiments/micro.gin"
INIT = "init-local_text-2.048K"
CONT = f"{INIT}__continue-local_text-1.024K"
COOL = f"{CONT}__cooldown-local_text-1.024K"


def _params(run_dir, step):
    return ocp.StandardCheckpointer().restore(run_dir / "checkpoints" / str(step) / "params")


def _opt_count(run_dir, step):
    state = ocp.StandardCheckpointer().restore(run_dir / "checkpoints" / str(step) / "opt_state")
    counts = [np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(state)
              if "count" in jax.tree_util.keystr(p)]
    return int(counts[0])


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    runner.run_experiment(MICRO, str(root), progress=False)
    return root


@pytest.mark.slow
def test_lineage_records_stage_parent_and_budget(experiment):
    lin = json.loads((experiment / "runs" / CONT / "lineage.json").read_text())
    assert lin["status"] == "finished" and lin["stage"] == "continue"
    assert lin["parent"] == INIT and lin["parent_step"] == 4
    assert lin["token_budget"] == 1024 and lin["steps"] == 2 and lin["mixture"] == "local_text"
    assert lin["variants"] == ["staged"]
    info = json.loads((experiment / "runs" / CONT / "run_info.json").read_text())
    assert info["train_steps"] == 2 and info["token_budget"] == 1024
    assert json.loads((experiment / "runs" / INIT / "lineage.json").read_text())["variants"] == [
        "solo", "staged"]


@pytest.mark.slow
def test_continue_starts_fresh_optimizer_and_step_counter(experiment):
    m = read_metrics(str(experiment / "runs" / CONT))
    assert [r["step"] for r in m] == [1, 2]
    assert _opt_count(experiment / "runs" / INIT, 4) == 4
    assert _opt_count(experiment / "runs" / CONT, 2) == 2  # not 4 + 2: fresh Adam


@pytest.mark.slow
def test_cooldown_anneals_linearly_to_the_final_lr(experiment):
    m = read_metrics(str(experiment / "runs" / COOL))
    assert m[0]["lr"] == pytest.approx(1e-3)  # COOLDOWN_LR at step 0
    assert m[-1]["lr"] == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)  # lr of the last of 2 steps
    from codemix.train.optimizer import make_schedule

    assert float(make_schedule(2, "linear", peak=1e-3)(2)) == 0.0
    assert float(make_schedule(2, "linear", peak=1e-3, final_lr=1e-6)(2)) == pytest.approx(1e-6)


@pytest.mark.slow
def test_continue_starts_from_parents_exact_weights(tmp_path):
    runner.run_experiment(MICRO, str(tmp_path), only=["staged"], progress=False,
                          run_params=["LR = 0.0", "COOLDOWN_LR = 0.0"])
    init = _params(tmp_path / "runs" / INIT, 4)
    cont = _params(tmp_path / "runs" / CONT, 2)  # LR 0 in continue: weights unchanged
    for a, b in zip(jax.tree.leaves(init), jax.tree.leaves(cont)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_interrupted_experiment_resumes_without_redoing(experiment, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(experiment, root)
    init_metrics = (root / "runs" / INIT / "metrics.jsonl").stat().st_mtime_ns
    # Interrupt the cooldown: not finished, only its step-2 checkpoint ... removed.
    lin_path = root / "runs" / COOL / "lineage.json"
    lin = json.loads(lin_path.read_text())
    lin["status"] = "running"
    lin_path.write_text(json.dumps(lin))
    shutil.rmtree(root / "runs" / COOL / "checkpoints")
    runner.run_experiment(MICRO, str(root), progress=False)
    assert (root / "runs" / INIT / "metrics.jsonl").stat().st_mtime_ns == init_metrics
    assert json.loads(lin_path.read_text())["status"] == "finished"
    summary = json.loads((root / "summary.json").read_text())
    assert {r["variant"] for r in summary} == {"solo", "staged"}
    assert all(r["loss"] > 0 for r in summary)


def test_unknown_variant_and_missing_parent_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown variant.*'nope'.*'solo'"):
        runner.run_experiment(MICRO, str(tmp_path), only=["nope"], progress=False)
    exp = runner.load_experiment(MICRO)
    from codemix.experiments.matrix import expand

    cool = [r for r in expand(exp.variants) if r.stage.kind == "cooldown"][0]
    with pytest.raises(FileNotFoundError, match="needs its parent"):
        runner.parent_step_of(tmp_path, cool)


def test_workdir_that_is_a_file_is_one_clear_error(tmp_path):
    f = tmp_path / "exp"
    f.write_text("not a directory")
    with pytest.raises(NotADirectoryError, match="is a file; pass a directory"):
        runner.run_experiment(MICRO, str(f), progress=False)


def test_unknown_mixture_in_a_later_stage_fails_the_dry_run(tmp_path):
    exp = runner.load_experiment(MICRO, ["b/chain.stages = [('init', 'local_text', 2048), "
                                         "('continue', 'no_such_mix', 1024)]"])
    with pytest.raises(ValueError, match=r"unknown mixture\(s\) 'no_such_mix' \(variant staged\).*known"):
        runner.plan(exp, exp.variants)
    with pytest.raises(ValueError, match="no_such_mix"):
        runner.run_experiment(MICRO, str(tmp_path / "w"), progress=False,
                              gin_params=["b/chain.stages = [('init', 'local_text', 2048), "
                                          "('continue', 'no_such_mix', 1024)]"])
    assert not (tmp_path / "w" / "runs").exists()  # nothing trained


@pytest.mark.slow
def test_finished_run_without_checkpoints_is_trained_again(tmp_path):
    import shutil

    root = tmp_path / "exp"
    runner.run_experiment(MICRO, str(root), only=["solo"], progress=False)
    shutil.rmtree(root / "runs" / INIT / "checkpoints")
    runner.run_experiment(MICRO, str(root), only=["solo"], progress=False)
    lin = json.loads((root / "runs" / INIT / "lineage.json").read_text())
    assert lin["status"] == "finished" and (root / "runs" / INIT / "checkpoints" / "4").is_dir()
