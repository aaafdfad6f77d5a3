"""Two processes joined by jax.distributed (gloo CPU collectives) train like one."""
import socket
import subprocess

import numpy as np
import pytest

from tests.train.helpers import MICRO, REPO, env, metrics, run_train, train_cmd

pytestmark = pytest.mark.slow  # trains in subprocesses

STEPS = 6
PARAMS = MICRO + [f"TRAIN_STEPS={STEPS}", "make_train_iterator.shard_mode='rows'",
                  "make_mesh.fsdp=-1", "train.checkpoint_every=3"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_run_equals_one_process_run(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    run_train(single, PARAMS, devices=4)

    port = _free_port()
    procs = []
    for pid in range(2):
        args = ["--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2",
                "--process_id", str(pid), "--cpu_collectives", "gloo"]
        procs.append(subprocess.Popen(train_cmd(multi, PARAMS, args), cwd=REPO, env=env(devices=2),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=400)
        assert p.returncode == 0, err[-4000:]

    a, b = metrics(single), metrics(multi)
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))
    np.testing.assert_allclose([r["loss"] for r in a], [r["loss"] for r in b], rtol=1e-5)
    np.testing.assert_allclose([r["grad_norm"] for r in a], [r["grad_norm"] for r in b], rtol=1e-4)
    # The held-out evaluation is sharded over both processes and gives the same numbers.
    val = sorted(k for k in a[-1] if k.startswith("val/") and k.endswith(("/loss", "/bpb")))
    assert len(val) == 12 and val == sorted(k for k in b[-1] if k.startswith("val/") and k != "val/seconds")
    np.testing.assert_allclose([a[-1][k] for k in val], [b[-1][k] for k in val], rtol=1e-5)
    # Both processes wrote their data-iterator state into the shared checkpoint.
    data_dir = multi / "checkpoints" / str(STEPS) / "data"
    assert sorted(p.name for p in data_dir.iterdir() if p.name.startswith("process_")) == [
        "process_0", "process_1"]
