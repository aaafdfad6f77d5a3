"""An experiment whose workdir is a gs:// URL, against a real GCS server
(fake-gcs-server, tests/gcs_server.py): every file lands in the bucket and none
on local disk, a kill -9 resumes from the bucket to the same bits as an
uninterrupted run, `codemix report` writes into the bucket, and a bucket that
can't be used is one clear error."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath

from codemix.errors import StorageError
from codemix.experiments import runner
from codemix.train.metrics import read_metrics

REPO = Path(__file__).resolve().parents[2]
MICRO = str(REPO / "tests" / "experiments" / "micro.gin")
# Two chains sharing their parent: solo = [init], staged = [init, continue]; an 8-step init
# with a checkpoint every 2 steps leaves room to kill it between checkpoints.
GIN = ["a/chain.stages = [('init', 'local_text', 4096)]",
       "b/chain.stages = [('init', 'local_text', 4096), ('continue', 'local_text', 1024)]",
       "Experiment.write_report = False"]
INIT = "init-local_text-4.096K"
CONT = f"{INIT}__continue-local_text-1.024K"
RUNS = {INIT: 8, CONT: 2}  # run -> final step


def _cmd(workdir: str) -> list[str]:
    cmd = [sys.executable, "-m", "codemix.main", "--log_level", "INFO", "experiment", "run", MICRO,
           "--workdir", workdir]
    for g in GIN:
        cmd += ["--gin_param", g]
    return cmd


def _env(gcs, tmpdir: Path) -> dict:
    e = {**os.environ, **gcs.env, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
         "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2", "TMPDIR": str(tmpdir),
         "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return e


def _files(root) -> set[str]:
    """Files under `root` (epath: local or gs://), relative; checkpoint internals and
    TensorBoard file names (time, host and pid in them) left out."""
    root = epath.Path(root)
    out, stack = set(), [root]
    while stack:
        for p in stack.pop().iterdir():
            rel = str(p)[len(str(root)) + 1:]
            parts = rel.split("/")
            item = "checkpoints" in parts and len(parts) == parts.index("checkpoints") + 3
            if parts[-1] == "commit_success.txt":
                continue  # Orbax marks a finished step so on GCS, where it can't rename a folder
            if p.is_dir() and (parts[-1] == "tensorboard" or item):
                out.add(rel + "/")  # <step>/params, ...: Orbax's and TensorStore's own layout
            elif p.is_dir():
                stack.append(p)
            else:
                out.add(rel)
    return out


def _event_steps(tb_dir: str) -> list[int]:
    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2

    from codemix import storage

    steps = []
    with storage.tf_readable(tb_dir) as d:
        for name in sorted(tf.io.gfile.listdir(d)):
            for raw in tf.data.TFRecordDataset(f"{d}/{name}").as_numpy_iterator():
                e = event_pb2.Event.FromString(raw)
                if any(v.tag == "loss" for v in e.summary.value):
                    steps.append(e.step)
    return sorted(steps)


def _values(record: dict) -> dict:
    """A metrics line without its wall-clock numbers."""
    return {k: v for k, v in record.items() if not any(t in k for t in ("time", "sec", "mfu"))}


def _no_gs_folder(*roots: Path) -> None:
    for root in roots:
        for d, dirs, _ in os.walk(root):
            assert not [x for x in dirs if x.startswith("gs:")], f"a local gs: folder in {d}"


@pytest.mark.slow
def test_experiment_on_gcs_resumes_after_kill_9_and_reports_into_the_bucket(gcs, tmp_path):
    url = "gs://bucket/exp"
    cwd, tmpdir = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmpdir.mkdir()
    env = _env(gcs, tmpdir)
    stored = gcs.root / "bucket" / "exp" / "runs" / INIT  # the server's own store, to watch progress
    # The same experiment, uninterrupted, on local disk: the reference bits. A process like the
    # others (one host device), alongside them.
    local = tmp_path / "local"
    (tmp_path / "tmp_local").mkdir()
    reference = subprocess.Popen(_cmd(str(local)), cwd=tmp_path, env=_env(gcs, tmp_path / "tmp_local"),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    proc = subprocess.Popen(_cmd(url), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 240
    while not (stored / "checkpoints" / "2" / "checksums.json").exists():
        assert proc.poll() is None, proc.stdout.read()[-4000:]
        assert time.monotonic() < deadline, "no checkpoint in the bucket after 240 s"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lineage = json.loads(epath.Path(f"{url}/runs/{INIT}/lineage.json").read_text())
    assert lineage["status"] == "running"  # killed inside the shared parent
    assert not epath.Path(f"{url}/runs/{CONT}").exists()

    again = subprocess.run(_cmd(url), cwd=cwd, env=env, capture_output=True, text=True, timeout=400,
                           check=False)
    assert again.returncode == 0, again.stderr[-4000:]
    assert f"resuming {url}/runs/{INIT} from step" in again.stderr

    _, err = reference.communicate(timeout=400)
    assert reference.returncode == 0, err[-4000:]
    for run, final in RUNS.items():
        ours, ref = read_metrics(f"{url}/runs/{run}"), read_metrics(str(local / "runs" / run))
        assert [r["step"] for r in ours] == list(range(1, final + 1))  # redone steps logged once
        assert [_values(r) for r in ours] == [_values(r) for r in ref]  # loss, grad norm, lr, tokens, bpb ...
        assert len(_values(ours[-1])) > 15
        a = ocp.StandardCheckpointer().restore(f"{url}/runs/{run}/checkpoints/{final}/params")
        b = ocp.StandardCheckpointer().restore(local / "runs" / run / "checkpoints" / str(final) / "params")
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        assert _event_steps(f"{url}/runs/{run}/tensorboard") == list(range(1, final + 1))
        assert json.loads(epath.Path(f"{url}/runs/{run}/lineage.json").read_text())["status"] == "finished"

    from codemix.main import main

    assert main(["report", url]) == 0
    report = epath.Path(f"{url}/report.md").read_text()
    assert "# Experiment report: micro" in report and "![Training loss" in report
    assert epath.Path(f"{url}/report/loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    expected = _files(local) | {"report.md", "report/loss_curves.png", "report/heldout_curves.png"}
    assert _files(url) == expected, _files(url) ^ expected
    assert {"plan.json", "summary.json", f"runs/{INIT}/metrics.jsonl", f"runs/{INIT}/run_info.json",
            f"runs/{INIT}/operative_config.gin", f"runs/{INIT}/heldout/step_8.json", f"runs/{CONT}/lineage.json",
            f"runs/{CONT}/checkpoints/2/checksums.json", f"runs/{CONT}/checkpoints/2/params/",
            f"runs/{CONT}/checkpoints/2/data/", f"runs/{CONT}/tensorboard/"} <= expected
    assert list(cwd.iterdir()) == []  # nothing written beside the command
    _no_gs_folder(cwd, tmpdir, REPO, Path.cwd())


def test_missing_bucket_is_one_clear_error_and_creates_nothing(gcs, tmp_path):
    with pytest.raises(StorageError, match=r"bucket gs://nosuch does not exist .*gcloud storage buckets create "
                                           r"gs://nosuch"):
        runner.run_experiment(MICRO, "gs://nosuch/exp", progress=False)
    from codemix.train.workdir import ensure_directory

    with pytest.raises(StorageError, match="gs://nosuch does not exist"):
        ensure_directory("gs://nosuch/run")  # what `codemix train --workdir` does first
    from codemix.main import main

    assert main(["report", "gs://nosuch/exp"]) != 0
    assert not (gcs.root / "nosuch").exists()  # gcsfs would have created it on mkdir
    assert [p.name for p in gcs.root.iterdir()] == ["bucket"]


def test_unreachable_endpoint_and_missing_credentials_are_clear(gcs, tmp_path, monkeypatch):
    from codemix import storage
    from tests.gcs_server import free_port

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    with pytest.raises(StorageError, match=r"no Google Cloud credentials for bucket gs://bucket: .*no-such-key"
                                           r".*gcloud auth application-default login"):
        storage.check("gs://bucket/exp")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    storage.check("gs://bucket/exp")  # the emulator needs none

    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", closed)
    start = time.monotonic()
    with pytest.raises(StorageError, match=rf"can't reach the storage endpoint {closed} \(STORAGE_EMULATOR_HOST\) "
                                           r"for bucket gs://bucket"):
        runner.run_experiment(MICRO, "gs://bucket/exp", progress=False)
    assert time.monotonic() - start < 30


def test_metrics_lines_accumulate_in_a_bucket_object(gcs):
    from codemix import storage

    log = storage.LineLog("gs://bucket/run/metrics.jsonl")
    log.write('{"step": 1}\n')
    log.write('{"step": 2}\n')
    log.close()
    again = storage.LineLog("gs://bucket/run/metrics.jsonl")  # a resumed run keeps what was there
    again.write('{"step": 3}\n')
    assert read_metrics("gs://bucket/run") == [{"step": 1}, {"step": 2}, {"step": 3}]
    assert (gcs.root / "bucket" / "run" / "metrics.jsonl").read_text().count("\n") == 3


def test_eval_reads_a_run_in_a_bucket_and_writes_its_results_there(gcs, tmp_path):
    from codemix.eval import loading
    from codemix.model import decoder
    from tests.eval.test_cli import CFG, MODEL_GIN, run_cli

    run = "gs://bucket/exp/runs/r"
    epath.Path(run).mkdir(parents=True, exist_ok=True)
    epath.Path(f"{run}/operative_config.gin").write_text(MODEL_GIN + "make_train_iterator.mixture = 'local_text'\n")
    params = decoder.init_params(CFG)
    saver = ocp.StandardCheckpointer()
    saver.save(f"{run}/checkpoints/5/params", params)  # TensorStore writes into the bucket
    saver.wait_until_finished()

    cfg, loaded, _, info = loading.load_model_for_eval(run)  # `codemix eval --checkpoint gs://...`
    assert cfg == CFG and info.step == 5 and info.run == "r" and info.path == run
    for x, y in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    out = f"{run}/eval/copa.json"
    assert run_cli(["--checkpoint", run, "--benchmarks", "copa", "--limit", "2", "--output", out]) == 0
    doc = json.loads(epath.Path(out).read_text())
    assert doc["meta"]["checkpoint"] == run and {r["benchmark"] for r in doc["records"]} == {
        "copa", "category:reasoning"}
    assert json.loads(epath.Path(f"{out}.parts/copa.json").read_text())["ids"] == ["0", "1"]
    assert (gcs.root / "bucket" / "exp" / "runs" / "r" / "eval" / "copa.json").is_file()
    _no_gs_folder(tmp_path, REPO, Path.cwd())


def test_a_file_another_host_writes_is_seen_at_once(gcs):
    # gcsfs would answer `exists` from a folder listing cached before the other host wrote
    import gcsfs

    from codemix import storage

    folder = storage.path("gs://bucket/exp/runs/a")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("{}\n")
    assert [p.name for p in folder.iterdir()] == ["metrics.jsonl"]  # listed: cached if caching were on
    other_host = gcsfs.GCSFileSystem(skip_instance_cache=True, token="anon")
    other_host.pipe("bucket/exp/runs/a/lineage.json", b'{"status": "finished"}')
    assert (folder / "lineage.json").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["lineage.json", "metrics.jsonl"]
