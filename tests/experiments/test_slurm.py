"""A job graph on a real SLURM (one node, this machine; .ci/slurm_up.sh starts it):
one job per run, each child after its parent, one job preempted mid-run, and
the same metrics as the whole experiment run in one process."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from codemix.train.metrics import read_metrics
from tests.train.helpers import REPO, env

pytestmark = pytest.mark.slow

GIN = "tests/experiments/graph.gin"
LONG = "init-local_text-2.048K__continue-local_text-122.9K"


def _slurm_ready() -> str | None:
    """None when sbatch works here, else why not."""
    if shutil.which("sbatch") and subprocess.run(["scontrol", "ping"], capture_output=True, text=True, check=False).stdout.count("UP"):
        return None
    if os.geteuid() != 0:
        return "SLURM is not running and starting it (.ci/slurm_up.sh) needs root"
    up = subprocess.run(["bash", str(REPO / ".ci" / "slurm_up.sh")], capture_output=True, text=True, timeout=600, check=False)
    if up.returncode != 0:
        return f".ci/slurm_up.sh could not start SLURM: {(up.stderr or up.stdout).strip()[-500:]}"
    return None


@pytest.fixture(scope="module")
def slurm():
    why = _slurm_ready()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the SLURM test: {why}")
        pytest.skip(why)


def _codemix(*args, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "codemix.main", "--log_level", "WARNING", *args], cwd=REPO,
                          env=env(), capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def _job(job_id: str) -> dict:
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, check=False).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def _wait(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_job_graph_on_slurm_with_a_preempted_job_equals_one_process(slurm, tmp_path):
    one, graph = tmp_path / "one", tmp_path / "graph"
    _codemix("experiment", "run", GIN, "--workdir", str(one))

    _codemix("experiment", "submit", GIN, "--workdir", str(graph), "--to", "slurm", "--gpus_per_node", "0",
             "--cpus_per_task", "1", "--time", "00:15:00")
    plan = json.loads((graph / "plan.json").read_text())
    jobs = {r: j["job_id"] for r, j in json.loads((graph / "jobs.json").read_text()).items()}
    assert len(plan) == 5 and sorted(jobs) == sorted(r["run"] for r in plan)  # one job per unique run
    for r in plan:
        dep = _job(jobs[r["run"]]).get("Dependency")
        if r["parent"]:  # (the dependency may already be met and cleared)
            assert dep in (f"afterok:{jobs[r['parent']]}(unfulfilled)", "(null)"), dep
        assert _job(jobs[r["run"]])["Requeue"] == "1"

    # Preempt the long run mid-run: SLURM sends SIGTERM, the trainer checkpoints at that step.
    long_dir = graph / "runs" / LONG
    _wait(lambda: len(read_metrics(str(long_dir))) >= 20, 240, "the long run's 20th step")
    subprocess.run(["scontrol", "requeue", jobs[LONG]], check=True)
    _wait(lambda: _job(jobs[LONG])["JobState"] == "PENDING", 60, "the requeued job to be pending")
    cut = [r["step"] for r in read_metrics(str(long_dir))]
    saved = sorted(int(p.name) for p in (long_dir / "checkpoints").iterdir() if p.name.isdigit())
    assert saved == [cut[-1]] and 20 <= cut[-1] < 240, (saved, cut[-1])  # the resume starts where it stopped
    subprocess.run(["scontrol", "update", f"jobid={jobs[LONG]}", "StartTime=now"], check=True)  # skip requeue delay

    def all_done():
        states = {r: _job(j)["JobState"] for r, j in jobs.items()}
        bad = {r: s for r, s in states.items() if s in ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL")}
        assert not bad, (bad, (graph / "slurm_logs").exists() and
                         [p.read_text()[-2000:] for p in (graph / "slurm_logs").iterdir()])
        return all(s == "COMPLETED" for s in states.values())

    _wait(all_done, 400, "every job to complete")
    assert int(_job(jobs[LONG])["Restarts"]) == 1
    for r in plan:
        info = _job(jobs[r["run"]])
        assert info["ExitCode"] == "0:0", (r["run"], info)
        lineage = json.loads((graph / "runs" / r["run"] / "lineage.json").read_text())
        assert lineage["status"] == "finished"
        if r["parent"]:  # each child started after its parent finished (lineage and SLURM agree)
            parent = json.loads((graph / "runs" / r["parent"] / "lineage.json").read_text())
            assert lineage["started"] >= parent["finished"], (r["run"], lineage["started"], parent["finished"])
            assert info["StartTime"] >= _job(jobs[r["parent"]])["EndTime"]
        a, b = read_metrics(str(one / "runs" / r["run"])), read_metrics(str(graph / "runs" / r["run"]))
        assert [m["step"] for m in b] == list(range(1, r["steps"] + 1))  # every step once, none twice
        np.testing.assert_array_equal([m["loss"] for m in a], [m["loss"] for m in b])
        np.testing.assert_array_equal([m["tokens"] for m in a], [m["tokens"] for m in b])

    status = json.loads(_codemix("experiment", "status", str(graph), "--json"))
    assert [r["state"] for r in status["runs"]] == ["finished"] * 5
    assert status["critical_path_steps"] == 0
    assert {r["run"]: r["job_id"] for r in status["runs"]} == jobs
    assert _codemix("experiment", "submit", GIN, "--workdir", str(graph), "--to", "slurm", "--gpus_per_node",
                    "0").count("finished, not submitted") == 5
