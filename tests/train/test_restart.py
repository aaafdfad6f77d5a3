"""Preemption and restart: killed runs resume exactly; SIGTERM checkpoints."""
import signal
import subprocess

import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.train.helpers import MICRO, REPO, env, metrics, run_train, train_cmd, wait_for_step

pytestmark = pytest.mark.slow  # trains in subprocesses

STEPS = 24
PARAMS = MICRO + [f"TRAIN_STEPS={STEPS}", "train.checkpoint_every=4", "train.keep_checkpoints=2"]


def _final_params(workdir, step=STEPS):
    return ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "params")


def test_sigkill_restart_matches_uninterrupted_run(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_train(straight, PARAMS)

    proc = subprocess.Popen(train_cmd(killed, PARAMS), cwd=REPO, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reached = wait_for_step(killed, 14, proc)
    proc.kill()  # SIGKILL: no chance to save
    proc.wait()
    assert reached < STEPS
    steps_on_disk = sorted(int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit())
    assert steps_on_disk and max(steps_on_disk) < STEPS
    run_train(killed, PARAMS)  # same command, same workdir: resumes

    a, b = metrics(straight), metrics(killed)
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))  # redone steps not duplicated
    np.testing.assert_array_equal([r["loss"] for r in a], [r["loss"] for r in b])
    np.testing.assert_array_equal([r["tokens"] for r in a], [r["tokens"] for r in b])
    pa, pb = _final_params(straight), _final_params(killed)
    for x, y in zip(_leaves(pa), _leaves(pb)):
        np.testing.assert_array_equal(x, y)


def _leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_sigterm_writes_a_checkpoint_then_resume_finishes(tmp_path):
    workdir = tmp_path / "run"
    # A fixed schedule length: the resume below shortens the run without changing its configuration.
    params = MICRO + ["TRAIN_STEPS=400", "train.checkpoint_every=1000", "train.schedule_steps=400"]
    proc = subprocess.Popen(train_cmd(workdir, params), cwd=REPO, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_step(workdir, 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert len(saved) == 1 and 3 <= saved[0] < 400  # checkpoint_every=1000: only the signal saved
    assert metrics(workdir)[-1]["step"] == saved[0]
    run_train(workdir, MICRO + [f"TRAIN_STEPS={saved[0] + 3}", "train.checkpoint_every=1000", "train.schedule_steps=400"])
    assert metrics(workdir)[-1]["step"] == saved[0] + 3
