"""Checkpoints: corruption is found, never trained on, never spread.

In-process tests drive `Checkpointer` on a small pytree; the end-to-end ones
train the micro model of helpers.py in a subprocess, as the restart tests do.
"""
import json
import math
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import SingleDeviceSharding

from codemix.train import checkpoint_integrity, checkpointing
from codemix.train.checkpointing import MANIFEST, Checkpointer, CorruptCheckpoint
from codemix.train.guards import NonFiniteLoss
from tests.train.helpers import MICRO, REPO, env, metrics, run_train, train_cmd


class _Iterator:
    """Stands in for the data iterator: its position is one number in a file."""

    global_batch_size = local_batch_size = 1

    def __init__(self, position=0):
        self.position = position

    def save(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "position").write_text(str(self.position))

    def restore(self, path):
        self.position = int((Path(path) / "position").read_text())


def _state(value: float):
    rng = np.random.default_rng(int(value))
    # 400 KB of incompressible floats, so a params file is larger than 64 KiB.
    params = {"w": rng.standard_normal(100_000).astype(np.float32) + np.float32(value),
              "b": np.full((4,), value, np.float32)}
    opt = {"mu": np.zeros((4,), np.float32)}
    return {"params": jax.tree.map(jax.numpy.asarray, params), "opt_state": jax.tree.map(jax.numpy.asarray, opt)}


def _restore_args(state):
    sh = SingleDeviceSharding(jax.devices()[0])
    abstract = {k: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state[k])
                for k in ("params", "opt_state")}
    shardings = {"step": sh, **{k: jax.tree.map(lambda _: sh, state[k]) for k in ("params", "opt_state")}}
    return abstract, shardings


def _save_steps(workdir, steps, keep=None, async_save=True):
    ckpt = Checkpointer(str(workdir), save_every=1, keep=keep, async_save=async_save)
    for s in steps:
        ckpt.save(s, _state(s), _Iterator(s), {"tokens": s, "process_count": 1})
    ckpt.close()


def _largest_file(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _restore_latest(workdir):
    abstract, shardings = _restore_args(_state(0))
    it = _Iterator()
    state, meta, step = Checkpointer(str(workdir), 1, None).restore_latest(abstract, shardings, it)
    return state, meta, step, it


def test_every_checkpoint_records_checksums_of_all_four_items(tmp_path):
    _save_steps(tmp_path, [1, 2])
    for step in (1, 2):
        step_dir = tmp_path / "checkpoints" / str(step)
        files = json.loads((step_dir / MANIFEST).read_text())["files"]
        assert {rel.split("/")[0] for rel in files} == {"params", "opt_state", "data", "meta"}
        on_disk = {str(p.relative_to(step_dir)) for p in step_dir.rglob("*") if p.is_file()
                   and p.relative_to(step_dir).parts[0] in checkpointing.ITEMS}
        assert set(files) == on_disk
        assert checkpointing.verify_checkpoint(checkpointing.epath.Path(step_dir))


def test_overwritten_params_resume_from_the_previous_checkpoint(tmp_path, caplog):
    _save_steps(tmp_path, [1, 2])
    bad = _largest_file(tmp_path / "checkpoints" / "2" / "params")
    with open(bad, "r+b") as f:
        f.seek(1024)
        f.write(b"\x7f" * 65536)
    state, meta, step, it = _restore_latest(tmp_path)
    assert step == 1 and meta["tokens"] == 1 and it.position == 1
    np.testing.assert_array_equal(np.asarray(state["params"]["w"]), np.asarray(_state(1)["params"]["w"]))
    assert bad.name in caplog.text and "SHA-256 mismatch" in caplog.text
    assert "1 steps (2..2) will be redone" in caplog.text
    # Set aside, so the redone step 2 can be saved again.
    assert (tmp_path / "checkpoints_corrupt" / "2" / "params").is_dir()
    assert not (tmp_path / "checkpoints" / "2").exists()


def test_truncated_meta_json_names_the_file_and_the_fix(tmp_path):
    _save_steps(tmp_path, [3])
    meta_file = _largest_file(tmp_path / "checkpoints" / "3" / "meta")
    meta_file.write_bytes(meta_file.read_bytes()[:10])
    with pytest.raises(CorruptCheckpoint) as e:
        _restore_latest(tmp_path)
    msg = str(e.value)
    assert str(meta_file) in msg and "truncated, 10 bytes where" in msg
    assert "Unterminated" not in msg and f"move {tmp_path / 'checkpoints'} away" in msg
    assert (tmp_path / "checkpoints" / "3").exists()  # nothing moved when nothing is good


def test_truncated_params_file_without_manifest_is_one_clear_message(tmp_path):
    _save_steps(tmp_path, [3])
    (tmp_path / "checkpoints" / "3" / MANIFEST).unlink()  # e.g. written by an older codemix
    bad = _largest_file(tmp_path / "checkpoints" / "3" / "params")
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    with pytest.raises(CorruptCheckpoint, match=r"checkpoints/3: params, opt_state or data could not be read") as e:
        _restore_latest(tmp_path)
    lines = str(e.value).splitlines()
    assert len(lines) == 3 and "truncated or damaged" in lines[1]  # one line per checkpoint, no traceback
    assert "See full TensorStore details" not in str(e.value)


def test_saving_a_non_finite_state_raises_and_writes_nothing(tmp_path):
    ckpt = Checkpointer(str(tmp_path), save_every=1, keep=None)
    ckpt.save(1, _state(1), _Iterator(1), {"process_count": 1})
    nan = _state(2)
    nan["params"]["b"] = nan["params"]["b"].at[0].set(np.nan)
    with pytest.raises(NonFiniteLoss, match="non-finite at step 2.*the last one, step 1, is kept") as e:
        ckpt.save(2, nan, _Iterator(2), {"process_count": 1})
    assert e.value.step == 2
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1"]
    assert (tmp_path / "checkpoints" / "1" / MANIFEST).exists()  # the good one was finished


def test_retention_never_deletes_the_newest_verified_checkpoint(tmp_path):
    _save_steps(tmp_path, [1, 2, 3])
    for step in (2, 3):  # e.g. killed between commit and hashing
        (tmp_path / "checkpoints" / str(step) / MANIFEST).unlink()
    ckpt = Checkpointer(str(tmp_path), save_every=1, keep=1)
    ckpt._prune()
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [1, 3]
    ckpt.save(4, _state(4), _Iterator(4), {"process_count": 1})
    ckpt.close()  # step 4 is verified now: the older ones go
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [4]


# End to end, through `codemix train`.

# A fixed schedule length, so the tests may resume these runs for more steps (run_config.py).
PARAMS = MICRO + ["train.checkpoint_every=5", "train.keep_checkpoints=3", "train.schedule_steps=30"]


def _steps_on_disk(workdir):
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


@pytest.fixture(scope="module")
def ten_steps(tmp_path_factory):
    """One healthy 10-step run (checkpoints 5 and 10); each test damages its own copy."""
    workdir = tmp_path_factory.mktemp("integrity") / "run"
    run_train(workdir, PARAMS + ["TRAIN_STEPS=10"])
    assert _steps_on_disk(workdir) == [5, 10]
    return workdir


def _copy_of(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


@pytest.mark.slow
def test_corrupted_checkpoint_resumes_from_the_previous_one(ten_steps, tmp_path):
    workdir = _copy_of(ten_steps, tmp_path)
    bad = _largest_file(workdir / "checkpoints" / "10" / "params")
    with open(bad, "r+b") as f:
        f.write(b"\0" * 65536)
    proc = run_train(workdir, PARAMS + ["TRAIN_STEPS=15"])
    assert "checkpoint step 10 is corrupt" in proc.stderr and bad.name in proc.stderr
    assert "5 steps (6..10) will be redone" in proc.stderr
    assert _steps_on_disk(workdir) == [5, 10, 15]
    assert (workdir / "checkpoints_corrupt" / "10").is_dir()
    assert [r["step"] for r in metrics(workdir)] == list(range(1, 16))
    assert all(math.isfinite(r["loss"]) for r in metrics(workdir))


@pytest.mark.slow
def test_nan_run_keeps_its_last_good_checkpoint_and_reports_the_step(ten_steps, tmp_path):
    workdir = _copy_of(ten_steps, tmp_path)
    # A learning rate of 1e30 blows the weights up after the first update.
    proc = subprocess.run(train_cmd(workdir, PARAMS + ["TRAIN_STEPS=30", "LR=1e30"], ["--allow_config_change"]),
                          cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 3, proc.stderr[-3000:]
    rows = metrics(workdir)
    first_bad = next(r["step"] for r in rows if not (math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"])))
    assert 11 <= first_bad <= 13 and rows[-1]["step"] == first_bad, proc.stderr[-3000:]
    assert f"at step {first_bad}; the run is stopped. The last checkpoint, step 10, is kept" in proc.stderr
    assert _steps_on_disk(workdir) == [5, 10]
    assert checkpointing.verify_checkpoint(checkpointing.epath.Path(workdir / "checkpoints" / "10"))


def test_saves_are_hashed_in_the_background_not_on_the_training_thread(tmp_path, monkeypatch):
    release, threads = threading.Event(), []
    real = checkpoint_integrity._sha256

    def held(path):
        threads.append(threading.current_thread())
        release.wait(60)
        return real(path)

    monkeypatch.setattr(checkpoint_integrity, "_sha256", held)
    ckpt = Checkpointer(str(tmp_path), save_every=1, keep=1)
    for s in (1, 2, 3):  # each save returns while the first step's hash is held
        ckpt.save(s, _state(s), _Iterator(s), {"tokens": s, "process_count": 1})
    assert not release.is_set() and threads
    # Nothing is verified yet: retention keeps the steps still being hashed (3 may still be written).
    assert {"1", "2"} <= {p.name for p in (tmp_path / "checkpoints").iterdir()}
    release.set()
    ckpt.close()  # waits for the hashes, then applies retention
    assert all(t is not threading.main_thread() for t in threads)
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [3]
    assert checkpointing.verify_checkpoint(checkpointing.epath.Path(tmp_path / "checkpoints" / "3"))


_VERIFY_AS = """
import json, sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
from etils import epath
from codemix.train import checkpoint_integrity as ci
out = {"good": ci.verify_shared(epath.Path(sys.argv[3]))}
try:
    ci.verify_shared(epath.Path(sys.argv[4]))
except ci.CorruptCheckpoint as e:
    out["bad"] = str(e)
out["hashed"] = ci.hashed()["bytes"]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_restore_verification_reads_once_and_every_process_gets_the_verdict(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    for d in (good, bad):
        for item in ("params", "meta"):
            (d / item).mkdir(parents=True)
            (d / item / "data").write_bytes(np.random.default_rng(0).bytes(300_000))
        checkpointing.write_manifest(checkpointing.epath.Path(d))
    with open(bad / "params" / "data", "r+b") as f:
        f.write(b"\0" * 100)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen([sys.executable, "-c", _VERIFY_AS, f"127.0.0.1:{port}", str(pid), str(good), str(bad)],
                              cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for pid in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert [o["good"] for o in outs] == [True, True]
    assert outs[0]["bad"] == outs[1]["bad"] and "params/data" in outs[0]["bad"] and "SHA-256" in outs[0]["bad"]
    assert outs[0]["hashed"] == 4 * 300_000 - 0 and outs[1]["hashed"] == 0  # good: 2 files, bad: both read
