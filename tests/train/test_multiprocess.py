"""Two processes joined by jax.distributed (gloo CPU collectives) train like one,
and a run they checkpointed resumes on 1 process and on 4 with the losses the
uninterrupted 2-process run had (the data position is global: pipeline.py)."""
import shutil
import socket
import subprocess

import numpy as np
import pytest

from tests.train.helpers import MICRO, REPO, env, metrics, run_train, train_cmd

pytestmark = pytest.mark.slow  # trains in subprocesses

STEPS = 6
RESUME_AT = 3
PARAMS = MICRO + [f"TRAIN_STEPS={STEPS}", "make_mesh.fsdp=-1", f"train.checkpoint_every={RESUME_AT}"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_processes(workdir, processes: int, devices_per_process: int) -> None:
    """Train in `processes` processes; their output goes to files (a full pipe
    would stall one process, and with it the others' collectives)."""
    port = _free_port()
    procs = []
    for pid in range(processes):
        args = ["--coordinator_address", f"127.0.0.1:{port}", "--num_processes", str(processes),
                "--process_id", str(pid), "--cpu_collectives", "gloo"]
        log = open(f"{workdir}.process_{pid}.log", "w")  # noqa: SIM115  (closed below)
        procs.append((subprocess.Popen(train_cmd(workdir, PARAMS, args), cwd=REPO,
                                       env=env(devices=devices_per_process),
                                       stdout=log, stderr=subprocess.STDOUT, text=True), log))
    for p, log in procs:
        p.wait(timeout=400)
        log.close()
        with open(log.name) as f:
            assert p.returncode == 0, f.read()[-4000:]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    multi = tmp_path_factory.mktemp("multi")
    _run_processes(multi, 2, 2)
    return multi


def test_two_process_run_equals_one_process_run(tmp_path, two_process_run):
    single, multi = tmp_path / "single", two_process_run
    run_train(single, PARAMS, devices=4)

    a, b = metrics(single), metrics(multi)
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))
    np.testing.assert_allclose([r["loss"] for r in a], [r["loss"] for r in b], rtol=1e-5)
    np.testing.assert_allclose([r["grad_norm"] for r in a], [r["grad_norm"] for r in b], rtol=1e-4)
    # The held-out evaluation is sharded over both processes and gives the same numbers.
    val = sorted(k for k in a[-1] if k.startswith("val/") and k.endswith(("/loss", "/bpb")))
    assert len(val) == 12 and val == sorted(k for k in b[-1] if k.startswith("val/") and k != "val/seconds")
    np.testing.assert_allclose([a[-1][k] for k in val], [b[-1][k] for k in val], rtol=1e-5)
    # The processes wrote their data lanes (8 lanes for 8 rows: 4 each) and one global position.
    data_dir = multi / "checkpoints" / str(STEPS) / "data"
    written = sorted(p.name for p in data_dir.iterdir() if p.name.startswith(("lane_", "position")))
    assert written == [f"lane_{i:05d}" for i in range(8)] + ["position.json"]


def _checkpointed_at_resume_step(source, target):
    """The 2-process run's workdir as it was when checkpoint RESUME_AT was its newest."""
    shutil.copytree(source, target)
    for step_dir in (target / "checkpoints").iterdir():
        if step_dir.name.isdigit() and int(step_dir.name) > RESUME_AT:
            shutil.rmtree(step_dir)
    (target / "run.lock").unlink(missing_ok=True)


@pytest.mark.parametrize("processes,devices_per_process", [(1, 4), (4, 1)], ids=["on_1_process", "on_4_processes"])
def test_two_process_checkpoint_resumes_with_another_process_count(tmp_path, two_process_run, processes,
                                                                   devices_per_process):
    resumed = tmp_path / "resumed"
    _checkpointed_at_resume_step(two_process_run, resumed)
    _run_processes(resumed, processes, devices_per_process)
    a, b = metrics(two_process_run), metrics(resumed)
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))  # steps 1-3 kept, 4-6 from the resume
    later = slice(RESUME_AT, STEPS)
    # Token counts per source are exact; losses equal to float reassociation on another device layout.
    for key in [k for k in a[-1] if k == "tokens" or k.startswith("tokens/")]:
        assert [r[key] for r in a[later]] == [r[key] for r in b[later]], key
    np.testing.assert_allclose([r["loss"] for r in a[later]], [r["loss"] for r in b[later]], rtol=1e-5)
    np.testing.assert_allclose([r["grad_norm"] for r in a[later]], [r["grad_norm"] for r in b[later]],
                               rtol=1e-4)


def _launch(workdir, params, port):
    procs = []
    for pid in range(2):
        args = ["--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2",
                "--process_id", str(pid), "--cpu_collectives", "gloo"]
        procs.append(subprocess.Popen(train_cmd(workdir, params, args), cwd=REPO, env=env(devices=2),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _final_params(workdir, step):
    import jax
    import orbax.checkpoint as ocp

    path = workdir / "checkpoints" / str(step) / "params"
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])  # saved over 4 devices, read here on one
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one),
                          ocp.StandardCheckpointer().metadata(path).item_metadata.tree)
    tree = ocp.StandardCheckpointer().restore(path, target)
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_sigterm_to_one_process_checkpoints_within_one_step_and_resumes_exactly(tmp_path):
    import re
    import signal

    from tests.train.helpers import wait_for_step

    steps = 40
    # log_every=5 and checkpoint_every=1000: neither is where the signal lands, so only
    # the every-step agreement can stop it there. A fixed schedule length keeps the resume's config.
    params = MICRO + [f"TRAIN_STEPS={steps}", "make_mesh.fsdp=-1",
                      "train.log_every=5", "train.checkpoint_every=1000", "train.heldout=False"]
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    procs = _launch(cut, params, _free_port())
    wait_for_step(cut, 5, procs[0])
    procs[1].send_signal(signal.SIGTERM)  # process 1 only: process 0 learns it through the agreement
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [128 + signal.SIGTERM] * 2, outs[0][1][-3000:] + outs[1][1][-3000:]
    got = re.search(r"signal 15 during step (\d+)", outs[1][1])
    assert got, outs[1][1][-3000:]
    k = int(got.group(1))
    saved = sorted(int(p.name) for p in (cut / "checkpoints").iterdir() if p.name.isdigit())
    assert len(saved) == 1 and saved[0] in (k, k + 1) and saved[0] < steps, (k, saved)
    assert metrics(cut)[-1]["step"] == saved[0]  # the steps since the last line are logged with the stop

    for p in _launch(cut, params, _free_port()):  # the same command resumes
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    for p in _launch(straight, params, _free_port()):
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    a, b = metrics(straight), metrics(cut)
    assert b[-1]["step"] == steps and b[-1]["tokens"] == a[-1]["tokens"]
    assert [r["step"] for r in b] == sorted({r["step"] for r in b})  # no step logged twice
    for x, y in zip(_final_params(straight, steps), _final_params(cut, steps)):
        np.testing.assert_array_equal(x, y)
