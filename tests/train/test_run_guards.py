"""A run is one configuration, one trainer, one record per step, one message per
failure -- each through the real `codemix train` command."""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from codemix.errors import RunLocked
from codemix.train.run_lock import LOCK_NAME, RunLock
from tests.train.helpers import (
    MICRO,
    REPO,
    env,
    metrics,
    run_train,
    train_cmd,
    wait_for_step,
)


def _run(workdir, params, extra_args=(), timeout=300):
    return subprocess.run(train_cmd(workdir, params, extra_args), cwd=REPO, env=env(), capture_output=True,
                          text=True, timeout=timeout, check=False)


def _digests(workdir) -> dict[str, str]:
    return {str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(workdir.rglob("*")) if p.is_file()}


def _tensorboard_steps(workdir) -> list[int]:
    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2

    steps = []
    for f in sorted((workdir / "tensorboard").glob("events.out.tfevents.*")):
        for raw in tf.data.TFRecordDataset(str(f)).as_numpy_iterator():
            event = event_pb2.Event.FromString(raw)
            steps += [event.step for v in event.summary.value if v.tag == "loss"]
    return sorted(steps)


@pytest.mark.slow  # two trainings and a refusal in subprocesses
def test_resume_under_another_config_is_refused_then_allowed_and_recorded(tmp_path):
    workdir = tmp_path / "run"
    base = MICRO + ["TRAIN_STEPS=6", "train.schedule_steps=8"]
    run_train(workdir, base)
    before = _digests(workdir)

    proc = _run(workdir, base + ["LR=0.15", "BATCH_SIZE=4", "ModelConfig.d_ff=256"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    err = proc.stderr
    assert f"run {workdir} was trained (to step 6) with a different configuration" in err
    for line in ("make_schedule.peak: 0.003 when trained, 0.15 now",
                 "make_train_iterator.batch_size: 8 when trained, 4 now",
                 "ModelConfig.d_ff: 128 when trained, 256 now"):
        assert line in err
    assert "3 difference(s)" in err and "new --workdir" in err and "--allow_config_change" in err
    assert _digests(workdir) == before  # nothing written: not operative_config.gin, not run_info.json

    # Extending the run (its schedule length is fixed) is no change of configuration.
    run_train(workdir, MICRO + ["TRAIN_STEPS=7", "train.schedule_steps=8"])
    assert [r["step"] for r in metrics(workdir)] == list(range(1, 8))

    run_train(workdir, MICRO + ["TRAIN_STEPS=8", "train.schedule_steps=8", "LR=0.01"],
              extra_args=["--allow_config_change"])
    lineage = json.loads((workdir / "lineage.json").read_text())
    [change] = lineage["config_changes"]
    assert change["at_step"] == 7 and change["allowed_by"] == "--allow_config_change"
    assert change["changes"] == {"make_schedule.peak": {"before": "0.003", "after": "0.01"}}
    assert [r["step"] for r in metrics(workdir)] == list(range(1, 9))
    assert json.loads((workdir / "training_config.json").read_text())["bindings"]["make_schedule.peak"] == "0.01"


@pytest.mark.slow
def test_second_trainer_on_a_workdir_is_refused_naming_the_first(tmp_path):
    workdir = tmp_path / "run"
    params = MICRO + ["TRAIN_STEPS=100000", "train.checkpoint_every=100000"]  # runs until stopped
    first = subprocess.Popen(train_cmd(workdir, params), cwd=REPO, env=env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for_step(workdir, 2, first)
        second = _run(workdir, params)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"workdir {workdir} is in use by another trainer (host {socket.gethostname()}, pid {first.pid}" \
            in second.stderr
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 128 + signal.SIGTERM
    steps = [r["step"] for r in metrics(workdir)]
    assert steps == list(range(1, steps[-1] + 1))  # every step once
    assert not (workdir / LOCK_NAME).exists()  # released on exit


def test_lock_of_a_dead_trainer_is_taken_over_and_a_live_one_refuses(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    owner = {"host": socket.gethostname(), "pid": int(dead.stdout), "started": 0, "heartbeat": 0, "token": "x"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(owner))
    with RunLock(tmp_path) as lock:
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
        with pytest.raises(RunLocked, match=rf"pid {os.getpid()}.*delete {tmp_path / LOCK_NAME}"):
            RunLock(tmp_path).acquire()
        assert lock.held
    assert not (tmp_path / LOCK_NAME).exists()
    other_host = {**owner, "host": "elsewhere", "heartbeat": 0}  # no heartbeat for decades: stale
    (tmp_path / LOCK_NAME).write_text(json.dumps(other_host))
    RunLock(tmp_path).acquire().release()
    assert list(tmp_path.iterdir()) == []  # neither the lock nor the one it took over is left behind


@pytest.mark.slow  # a subprocess that imports the trainer (~20 s on 2 busy cores)
def test_workdir_that_is_a_file_is_one_message(tmp_path):
    f = tmp_path / "run"
    f.write_text("not a directory")
    proc = _run(f, MICRO + ["TRAIN_STEPS=2"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"workdir {f}: {f} is a file, not a directory; pass another --workdir" in proc.stderr


def _can_mount_tmpfs(path) -> bool:
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            f"mount -t tmpfs -o size=64k tmpfs {path}"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.slow
def test_disk_full_before_a_checkpoint_is_one_message_and_the_rerun_logs_each_step_once(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("unshare") is None or not _can_mount_tmpfs(disk):
        pytest.skip("needs `unshare --user --mount` to mount a small tmpfs")
    run, copy = disk / "run", tmp_path / "run"
    # 1 MiB holds the metrics and TensorBoard lines of steps 1-5 but not the checkpoint at step 5 (~8 MB).
    cmd = " ".join(f"'{a}'" for a in train_cmd(run, MICRO + ["TRAIN_STEPS=8"]))
    script = f"mount -t tmpfs -o size=1m tmpfs {disk} && {cmd}; rc=$?; cp -a {run} {copy}; exit $rc"
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], cwd=REPO,
                          env=env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and proc.stderr.count("No space left on device") == 1
    assert f"the disk holding {run} is full (No space left on device) while writing checkpoint step 5" \
        in proc.stderr
    assert "it has no complete checkpoint yet, so it starts again from step 0" in proc.stderr
    assert [r["step"] for r in metrics(copy)] == [1, 2, 3, 4, 5]

    run_train(copy, MICRO + ["TRAIN_STEPS=8"])  # on a disk with room: from step 0 again
    assert [r["step"] for r in metrics(copy)] == list(range(1, 9))  # not 1-5 twice
    assert _tensorboard_steps(copy) == list(range(1, 9))
    assert sorted(p.name for p in (copy / "heldout").iterdir()) == ["step_8.json"]


def test_rewind_keeps_each_step_up_to_the_start_once(tmp_path):
    from codemix.train.rewind import rewind

    lines = [{"step": s, "loss": 5.0 - s / 10, "n": k} for k in (0, 1) for s in (1, 2, 3, 4)]  # two trainers
    text = "".join(json.dumps(r) + "\n" for r in lines) + '{"step": 5, "lo'  # and a torn last line
    (tmp_path / "metrics.jsonl").write_text(text)
    (tmp_path / "heldout").mkdir()
    for s in (2, 4):
        (tmp_path / "heldout" / f"step_{s}.json").write_text("{}")
    rewind(tmp_path, 3)
    kept = metrics(tmp_path)
    assert [r["step"] for r in kept] == [1, 2, 3] and all(r["n"] == 1 for r in kept)  # the last line of a step
    assert [p.name for p in (tmp_path / "heldout").iterdir()] == ["step_2.json"]
    rewind(tmp_path, 0)
    assert metrics(tmp_path) == []
