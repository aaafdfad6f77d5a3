"""An experiment as a graph of jobs: one job per unique run, each after its parent's.

`codemix experiment submit GIN --workdir W --to slurm` walks the plan (every
unique run once, in dependency order) and submits, per run that has not
finished, one batch job that runs `codemix experiment run GIN --workdir W --run
NAME`; a run whose parent is not finished depends on the parent's job
(`--dependency=afterok:<id>`), so independent chains run side by side and a
child starts only after its parent succeeded. Jobs are requeueable: a SIGTERM
(preemption, `scontrol requeue`, or the time limit's warning signal) makes the
trainer checkpoint at the end of its step and exit 143, the job script then
requeues itself, and the requeued job resumes from that checkpoint (the run's
lock and its stored configuration keep a second trainer and a changed
configuration out). Submitted job ids go to `W/jobs.json`; a run whose job is
still queued or running is not submitted again.

`--to tpu` plans one queued resource per chain (`chains`): a chain is a path
through the graph, trained run after run by one detached worker command, and
a chain whose first run's parent is trained by another chain waits for it
(`--wait_for_parent`). Nothing is run there without gcloud; `--dry_run` prints
every command.

The plan is the contract between the submitter and its jobs: submitting into
a workdir whose plan.json differs from the gin's plan is refused, showing the
difference.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence

from etils import epath

from codemix.errors import ExperimentError

log = logging.getLogger(__name__)

JOBS_FILE = "jobs.json"


def pick_run(runs, name: str, gin_file: str):
    """The run called `name`; ExperimentError listing the plan's runs if there is none."""
    for r in runs:
        if r.name == name:
            return r
    listed = "\n  ".join(r.name for r in runs)
    raise ExperimentError(f"--run {name!r} is not a run of {gin_file}; its runs are:\n  {listed}\n"
                          f"(`codemix experiment run {gin_file} --workdir W --dry_run` prints them with parents).")


def plan_differences(old: list[dict], new: list[dict]) -> list[str]:
    """What changed between two plans: runs added or removed, and changed fields of the others."""
    a, b = {r["run"]: r for r in old}, {r["run"]: r for r in new}
    out = [f"run {n} is new" for n in b if n not in a] + [f"run {n} is no longer planned" for n in a if n not in b]
    for n, old_row in a.items():
        if n in b:
            for k in sorted(set(old_row) | set(b[n])):
                if old_row.get(k) != b[n].get(k):
                    out.append(f"run {n}: {k} {old_row.get(k)!r} -> {b[n].get(k)!r}")
    return out


def check_plan(workdir, rows: list[dict], gin_file: str) -> None:
    """The workdir's plan.json, if any, is this gin's plan; else ExperimentError showing the difference."""
    path = epath.Path(workdir) / "plan.json"
    if not path.exists():
        return
    diff = plan_differences(json.loads(path.read_text()), rows)
    if diff:
        shown = "\n  ".join(diff[:20]) + (f"\n  ... and {len(diff) - 20} more" if len(diff) > 20 else "")
        raise ExperimentError(
            f"{path} was written for another plan than {gin_file} gives now; its jobs would train runs of "
            f"the other one:\n  {shown}\nSubmit into a new --workdir, or restore the gin (and --gin_param "
            f"values) the workdir was submitted with.")


def _write_atomic(path: epath.Path, text: str) -> None:
    tmp = epath.Path(f"{path}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_jobs(workdir) -> dict:
    path = epath.Path(workdir) / JOBS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def is_finished(workdir, run: str) -> bool:
    lineage = epath.Path(workdir) / "runs" / run / "lineage.json"
    return lineage.exists() and json.loads(lineage.read_text()).get("status") == "finished"


def run_command(gin_file: str, workdir: str, run: str, gin_params: Sequence[str], run_params: Sequence[str],
                python: str | None = None, extra: Sequence[str] = ()) -> list[str]:
    """The command one job runs: `codemix experiment run GIN --workdir W --run NAME` (this Python)."""
    cmd = [python or sys.executable, "-m", "codemix.main", "experiment", "run", gin_file,
           "--workdir", str(workdir), "--run", run]
    for g in gin_params:
        cmd += ["--gin_param", g]
    for g in run_params:
        cmd += ["--run_param", g]
    return cmd + list(extra)


# --- SLURM -------------------------------------------------------------------

def _sbatch() -> str:
    path = shutil.which("sbatch")
    if path is None:
        raise ExperimentError("`sbatch` is not on PATH: submit from a SLURM login node (or install "
                              "slurm-client and point it at your cluster), or use --to tpu.")
    return path


def _alive(job_id: str) -> bool:
    """True while SLURM still has the job queued, running or requeued."""
    out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True, check=False)
    return out.returncode == 0 and bool(out.stdout.strip())


def submit_slurm(gin_file: str, workdir: str, rows: list[dict], *, gin_params: Sequence[str] = (),
                 run_params: Sequence[str] = (), dry_run: bool = False, job_args: dict | None = None,
                 extra: Sequence[str] = ()) -> dict:
    """Submit one sbatch job per unfinished run; returns {run: job id} ("DRY<n>" on a dry run).
    `job_args`: SlurmJob fields (nodes, gpus_per_node, cpus_per_task, time, partition, account, log_dir)."""
    from codemix.launch.slurm import SlurmJob

    root = epath.Path(workdir)
    job_args = dict(job_args or {})
    local = "://" not in str(workdir)
    job_args.setdefault("log_dir", str(root / "slurm_logs") if local else "logs")
    sbatch = None if dry_run else _sbatch()
    known = read_jobs(root)
    ids: dict[str, str] = {}
    scripts: list[str] = []
    for i, row in enumerate(rows):
        name, parent = row["run"], row["parent"]
        if is_finished(root, name):
            print(f"finished, not submitted: {name}")
            continue
        old = known.get(name, {}).get("job_id")
        if not dry_run and old and _alive(old):
            print(f"still queued or running as job {old}: {name}")
            ids[name] = old
            continue
        job = SlurmJob(command=tuple(run_command(gin_file, str(root), name, gin_params, run_params, extra=extra)),
                       job_name=f"codemix-{i:03d}", requeue_on_stop=True, **job_args)
        text = job.render()
        deps = [f"--dependency=afterok:{ids[parent]}", "--kill-on-invalid-dep=yes"] if parent in ids else []
        if dry_run:
            ids[name] = f"DRY{i}"
            scripts.append(f"# run {name}\n# sbatch {' '.join(deps)}\n{text}")
            continue
        if local:
            root.mkdir(parents=True, exist_ok=True)
            epath.Path(job_args["log_dir"]).mkdir(parents=True, exist_ok=True)
        else:
            os.makedirs(job_args["log_dir"], exist_ok=True)
        out = subprocess.run([sbatch, "--parsable", *deps], input=text, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise ExperimentError(f"sbatch refused the job of run {name}: {out.stderr.strip()}\nFix the job "
                                  f"settings (--partition, --gpus_per_node, --cpus_per_task, --time) and submit "
                                  f"again: finished runs and queued jobs are not submitted twice.")
        ids[name] = out.stdout.strip().split(";")[0]
        known[name] = {"job_id": ids[name], "to": "slurm", "parent_job": ids.get(parent),
                       "submitted": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _write_atomic(root / JOBS_FILE, json.dumps(known, indent=2))
        print(f"job {ids[name]}: {name}" + (f" (after job {ids[parent]})" if parent in ids else ""))
    if dry_run:
        print("\n\n".join(scripts))
    return ids


# --- TPU ---------------------------------------------------------------------

def chains(rows: list[dict]) -> list[list[dict]]:
    """The graph cut into paths: each run continues its parent's chain when it is the
    parent's first child, else starts a chain of its own (which waits for the parent)."""
    out: list[list[dict]] = []
    tail: dict[str, int] = {}  # run -> index of the chain it ends
    for row in rows:
        k = tail.pop(row["parent"], None) if row["parent"] else None
        if k is None:
            out.append([row])
            k = len(out) - 1
        else:
            out[k].append(row)
        tail[row["run"]] = k
    return out


def tpu_commands(gin_file: str, workdir: str, rows: list[dict], *, name: str, zone: str, accelerator: str,
                 project: str | None = None, spot: bool = True, gin_params: Sequence[str] = (),
                 run_params: Sequence[str] = (), extra: Sequence[str] = ()) -> list[tuple[str, list[list[str]]]]:
    """Per chain: (queued-resource name, the gcloud commands that create it, sync and install the
    pinned checkout, and start the chain's runs detached on every worker)."""
    from codemix.launch.tpu import TpuJob

    plan = []
    for i, chain in enumerate(chains(rows)):
        steps = []
        for row in chain:
            cmd = run_command(gin_file, workdir, row["run"], gin_params, run_params, python="python3",
                              extra=[*extra, "--distributed", "--wait_for_parent"])
            steps.append(shlex.join(cmd))
        job = TpuJob(name=f"{name}-c{i}", zone=zone, accelerator=accelerator, project=project, spot=spot,
                     command=("bash", "-c", " && ".join(steps)), log_file=f"codemix-{name}-c{i}.log")
        argvs = job.create() + job.sync() + job.install() + job.run_detached()
        plan.append((job.name, argvs))
    return plan


def wait_for_parent(workdir, run, poll_s: float = 60.0) -> None:
    """Block until `run`'s parent has finished (a TPU chain whose parent another chain trains)."""
    if not run.parent:
        return
    announced = False
    while not is_finished(workdir, run.parent):
        if not announced:
            log.info("%s waits for its parent %s to finish", run.name, run.parent)
            announced = True
        time.sleep(poll_s)
