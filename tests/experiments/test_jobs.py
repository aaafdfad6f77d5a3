"""The job graph without a scheduler: one job per run, dependencies, the plan as a
contract, refusals with their fixes, status and the critical path left."""
import json
import os
import subprocess
import time

import pytest

from codemix.errors import ExperimentError
from codemix.experiments import jobs, runner, status
from codemix.launch.slurm import SlurmJob

GIN = "tests/experiments/graph.gin"
INIT = "init-local_text-2.048K"
SHORT = f"{INIT}__continue-local_text-1.024K"
LONG = f"{INIT}__continue-local_text-122.9K"


@pytest.fixture(scope="module")
def rows():
    exp = runner.load_experiment(GIN)
    return runner.plan(exp, exp.variants)


def test_unknown_run_lists_the_plans_runs(tmp_path):
    with pytest.raises(ExperimentError, match=r"--run 'nope' is not a run of tests/experiments/graph.gin") as e:
        runner.run_experiment(GIN, str(tmp_path), run="nope", progress=False)
    assert all(name in str(e.value) for name in (INIT, SHORT, LONG))
    assert not (tmp_path / "runs").exists()


def test_a_run_whose_parent_has_not_finished_is_refused_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"needs its parent {INIT}, which has not finished") as e:
        runner.run_experiment(GIN, str(tmp_path), run=SHORT, progress=False)
    assert f"--run {INIT}" in str(e.value)
    assert not (tmp_path / "runs" / SHORT / "checkpoints").exists()


def test_dry_run_submits_one_job_per_run_after_its_parents(rows, tmp_path, capsys):
    ids = jobs.submit_slurm(GIN, str(tmp_path), rows, dry_run=True, job_args={"gpus_per_node": 0, "cpus_per_task": 1})
    assert list(ids) == [r["run"] for r in rows] and len(ids) == 5
    out = capsys.readouterr().out
    for r in rows:
        deps = f"# sbatch --dependency=afterok:{ids[r['parent']]}" if r["parent"] else "# sbatch \n"
        assert f"# run {r['run']}\n{deps}" in out
    assert out.count("#SBATCH --requeue") == 5 and "--gpus-per-node" not in out
    assert out.count(f"--workdir {tmp_path} --run ") == 5
    assert not (tmp_path / "jobs.json").exists()


def test_rendered_job_requeues_itself_after_a_signal_stop(tmp_path):
    script = tmp_path / "job.sbatch"
    script.write_text(SlurmJob(command=("true",), gpus_per_node=0, requeue_on_stop=True).render())
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    text = script.read_text()
    assert '[ "1" = 1 ]' in text and 'scontrol requeue "$SLURM_JOB_ID"' in text
    assert '[ "0" = 1 ]' in SlurmJob(command=("true",)).render()


def test_submit_without_sbatch_says_so(rows, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ExperimentError, match="`sbatch` is not on PATH"):
        jobs.submit_slurm(GIN, str(tmp_path / "w"), rows)


def test_submit_into_a_workdir_planned_for_another_gin_shows_the_difference(rows, tmp_path):
    old = [dict(r) for r in rows if r["run"] != LONG]
    old[0]["steps"] = 7
    (tmp_path / "plan.json").write_text(json.dumps(old))
    with pytest.raises(ExperimentError) as e:
        jobs.check_plan(tmp_path, rows, GIN)
    msg = str(e.value)
    assert f"run {LONG} is new" in msg and f"run {INIT}: steps 7 -> 4" in msg and "new --workdir" in msg
    (tmp_path / "plan.json").write_text(json.dumps(rows))
    jobs.check_plan(tmp_path, rows, GIN)  # the same plan: no error


def test_tpu_chains_cover_every_run_once_and_wait_for_other_chains(rows):
    got = [[r["run"] for r in c] for c in jobs.chains(rows)]
    assert got == [[INIT, SHORT, f"{SHORT}__cooldown-local_text-1.024K"], [LONG, f"{LONG}__cooldown-local_text-1.024K"]]
    plan = jobs.tpu_commands(GIN, "gs://b/exp", rows, name="g", zone="z", accelerator="v4-32")
    assert [n for n, _ in plan] == ["g-c0", "g-c1"]
    run = " ".join(plan[1][1][-1])
    assert "setsid nohup" in run and f"--run {LONG}" in run and "--wait_for_parent" in run


def test_status_reports_states_heartbeats_and_the_critical_path_left(rows, tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps(rows))
    runs = tmp_path / "runs"
    (runs / INIT).mkdir(parents=True)
    (runs / INIT / "lineage.json").write_text(json.dumps({"status": "finished"}))
    (runs / LONG).mkdir()
    (runs / LONG / "lineage.json").write_text(json.dumps({"status": "running"}))
    (runs / LONG / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "tokens": 512 * s}) + "\n"
                                                       for s in (1, 2, 40)))
    now = time.time()
    (runs / LONG / "run.lock").write_text(json.dumps({"host": "h1", "pid": 7, "job_id": "42", "heartbeat": now - 12}))
    (tmp_path / "jobs.json").write_text(json.dumps({SHORT: {"job_id": "43"}}))
    doc = status.collect(tmp_path, now=now)
    by = {r["run"]: r for r in doc["runs"]}
    assert by[INIT]["state"] == "finished" and by[SHORT]["state"] == "ready" and by[SHORT]["job_id"] == "43"
    assert by[LONG]["state"] == "running" and by[LONG]["job_id"] == "42" and by[LONG]["step"] == 40
    assert by[LONG]["tokens"] == 512 * 40 and by[LONG]["heartbeat_s_ago"] == pytest.approx(12, abs=0.1)
    assert by[f"{LONG}__cooldown-local_text-1.024K"]["state"] == "waiting"
    assert doc["critical_path_steps"] == (240 - 40) + 2 and doc["critical_path"][0] == LONG
    os.utime(runs / LONG / "run.lock")
    (runs / LONG / "run.lock").write_text(json.dumps({"host": "h1", "pid": 7, "heartbeat": now - 3600}))
    assert {r["run"]: r["state"] for r in status.collect(tmp_path, now=now)["runs"]}[LONG] == "stale"
    text = status.format_status(doc)
    assert "critical path left: 202 steps" in text and "12 s ago" in text
    with pytest.raises(ExperimentError, match="no readable plan.json"):
        status.collect(tmp_path / "runs")
