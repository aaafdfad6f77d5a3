"""`codemix launch tpu|slurm [--dry_run] -- <command run on every worker>`."""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time

from codemix.launch import slurm, tpu

log = logging.getLogger(__name__)


def add_arguments(p):
    sub = p.add_subparsers(dest="launch_target", required=True, metavar="TARGET")
    t = sub.add_parser("tpu", help="run a command on every worker of a Cloud TPU VM (gcloud)",
                       epilog="example:\n"
                              "  codemix launch tpu --name my-tpu --zone us-central2-b --accelerator v4-32 --dry_run \\\n"
                              "      -- codemix train --gin_file gin/runs/tiny_cpu.gin --workdir runs/a")
    t.add_argument("--name", required=True, help="TPU VM name (created if missing, reused if READY)")
    t.add_argument("--zone", required=True, help="zone of your TPU quota, e.g. us-central2-b")
    t.add_argument("--accelerator", required=True, help="accelerator type, e.g. v4-32, v5p-64, v5litepod-16")
    t.add_argument("--project", default=None, help="GCP project (default: gcloud's configured one)")
    t.add_argument("--spot", action="store_true", help="spot capacity via a queued resource")
    t.add_argument("--version", default=None, help="TPU software version (default per generation)")
    t.add_argument("--steps", default="create,sync,install,run",
                   help=f"comma-separated subset of {','.join(tpu.STEPS)} (default: all but delete)")
    t.add_argument("--teardown", action="store_true", help="delete the VM after the run (adds 'delete')")
    t.add_argument("--source", default=".", help="local checkout to sync to the workers")
    t.add_argument("--dry_run", action="store_true", help="print the exact commands, run nothing")
    t.add_argument("--follow", action="store_true",
                   help="run in the foreground of the SSH session and stream its output (the job then dies "
                        "with the session); default: detached (setsid nohup) on every worker")
    t.add_argument("--logs", action="store_true",
                   help="print the last lines of every worker's log of this --name, then exit")
    t.add_argument("--log_file", default="codemix-run.log", help="worker-side log file (in $HOME)")
    t.add_argument("worker_command", nargs=argparse.REMAINDER, help="-- then the command for every worker")

    s = sub.add_parser("slurm", help="render the sbatch template and submit it",
                       epilog="example:\n"
                              "  codemix launch slurm --nodes 2 --gpus_per_node 8 --partition gpu --dry_run \\\n"
                              "      -- codemix train --gin_file gin/runs/tiny_cpu.gin --workdir runs/a")
    s.add_argument("--nodes", type=int, default=1, help="nodes = JAX processes")
    s.add_argument("--gpus_per_node", type=int, default=8)
    s.add_argument("--job_name", default="codemix")
    s.add_argument("--time", default="24:00:00", help="wall-clock limit")
    s.add_argument("--cpus_per_task", type=int, default=32)
    s.add_argument("--partition", default=None)
    s.add_argument("--account", default=None)
    s.add_argument("--log_dir", default="logs")
    s.add_argument("--workdir_root", default=None,
                   help="checkout on shared disk the tasks cd into (default: where sbatch runs)")
    s.add_argument("--script_dir", default=".", help="where to write the rendered <job_name>.sbatch")
    s.add_argument("--dry_run", action="store_true", help="print the script and commands, submit nothing")
    s.add_argument("worker_command", nargs=argparse.REMAINDER, help="-- then the command for every task")


def _command(args) -> tuple[str, ...]:
    cmd = list(args.worker_command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    return tuple(cmd)


def _execute(argv: list[str], **kw) -> subprocess.CompletedProcess:
    print("+ " + tpu.shell(argv), file=sys.stderr, flush=True)
    return subprocess.run(argv, check=True, **kw)


def _vm_state(job: tpu.TpuJob) -> str | None:
    proc = subprocess.run(job.describe(), capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _create_or_reuse(job: tpu.TpuJob) -> None:
    state = _vm_state(job)
    while state in ("CREATING", "STARTING", "RESTARTING", "REPAIRING"):
        log.info("TPU %s is %s; waiting", job.name, state)
        time.sleep(30)
        state = _vm_state(job)
    if state in tpu.READY_STATES:
        log.info("reusing TPU %s (READY)", job.name)
        return
    if state is not None:
        log.warning("TPU %s is %s: deleting it and creating a new one", job.name, state)
        for argv in job.delete():
            _execute(argv)
    for argv in job.create():
        _execute(argv)


def run_tpu(args) -> int:
    steps = [s for s in args.steps.split(",") if s]
    if args.teardown and "delete" not in steps:
        steps.append("delete")
    job = tpu.TpuJob(name=args.name, zone=args.zone, accelerator=args.accelerator,
                     command=_command(args), project=args.project, spot=args.spot,
                     version=args.version, source=args.source, follow=args.follow, log_file=args.log_file)
    if args.logs:
        argv = job.logs()[0]
        if args.dry_run:
            print(tpu.shell(argv))
            return 0
        try:
            _execute(argv)
        except FileNotFoundError as e:
            print(f"codemix launch: {e.filename} not found; install the Google Cloud SDK (gcloud).", file=sys.stderr)
            return 2
        except subprocess.CalledProcessError as e:
            return e.returncode or 1
        return 0
    if "run" in steps:
        job.worker_command()  # fails early without a command
        warning = tpu.check_workdir(job.command)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    if args.dry_run:
        topo = tpu.topology(job.accelerator)
        print(f"# {job.accelerator}: {topo.chips} chips on {topo.hosts} hosts; "
              f"the command runs once per host ({topo.hosts} JAX processes)")
        if "create" in steps:
            print("# create-or-reuse: reuse if this prints READY; delete first if "
                  f"{'/'.join(tpu.DEAD_STATES)}")
            print(tpu.shell(job.describe()))
        for step, argv in tpu.plan(job, steps):
            print(f"# {step}")
            print(tpu.shell(argv))
        return 0
    try:
        for step in tpu.STEPS:
            if step not in steps:
                continue
            if step == "create":
                _create_or_reuse(job)
                continue
            for argv in getattr(job, step)():
                _execute(argv)
    except FileNotFoundError as e:
        print(f"codemix launch: {e.filename} not found; install the Google Cloud SDK "
              f"(gcloud) or use --dry_run.", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:
        print(f"codemix launch: step failed (exit {e.returncode}): {tpu.shell(e.cmd)}\n"
              f"Relaunching the same command resumes from the last checkpoint.", file=sys.stderr)
        return e.returncode or 1
    return 0


def run_slurm(args) -> int:
    job = slurm.SlurmJob(command=_command(args), nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                         job_name=args.job_name, time=args.time, cpus_per_task=args.cpus_per_task,
                         partition=args.partition, account=args.account, log_dir=args.log_dir,
                         workdir_root=args.workdir_root)
    script = job.render()
    path = slurm.script_path(job, args.script_dir)
    if args.dry_run:
        print(f"# {path}")
        print(script, end="")
        print("# submit")
        for argv in slurm.commands(job, args.script_dir):
            print(tpu.shell(argv))
        return 0
    with open(path, "w") as f:
        f.write(script)
    try:
        for argv in slurm.commands(job, args.script_dir):
            _execute(argv)
    except FileNotFoundError as e:
        print(f"codemix launch: {e.filename} not found; run this on the cluster's login node "
              f"or use --dry_run.", file=sys.stderr)
        return 2
    return 0


def run(args) -> int:
    return run_tpu(args) if args.launch_target == "tpu" else run_slurm(args)
