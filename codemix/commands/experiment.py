"""`codemix experiment run F --workdir DIR [--only V ...] [--run NAME] [--dry_run]`,
`codemix experiment submit F --workdir DIR --to slurm|tpu [--dry_run]` and
`codemix experiment status DIR`."""
from __future__ import annotations

import json


def add_arguments(p):
    sub = p.add_subparsers(dest="experiment_command", required=True, metavar="ACTION")
    r = sub.add_parser("run", help="run (or resume) every run of an experiment in dependency order",
                       epilog="examples:\n"
                              "  codemix experiment run gin/experiments/demo.gin --workdir runs/demo --dry_run\n"
                              "  codemix experiment run gin/experiments/paper.gin --workdir runs/paper --only code_p25 \\\n"
                              "      --gin_param Experiment.runtime_gin='\"gin/runtime/tpu_v4.gin\"'")
    r.add_argument("gin_file", help="experiment gin, e.g. gin/experiments/demo.gin")
    r.add_argument("--workdir", required=True, help="experiment directory (runs/<run>/ inside)")
    r.add_argument("--only", nargs="+", default=None, metavar="VARIANT",
                   help="run only these variants (and the runs they need)")
    r.add_argument("--dry_run", action="store_true",
                   help="print the plan (runs, parents, tokens, steps, FLOPs) and exit")
    r.add_argument("--gin_param", action="append", default=[],
                   help="binding for the experiment gin (e.g. study_matrix.groups=['core'])")
    r.add_argument("--run_param", action="append", default=[],
                   help="binding added to every run's gin (e.g. train.log_every=5)")
    r.add_argument("--json", action="store_true", help="with --dry_run: print the plan as JSON")
    r.add_argument("--run", default=None, metavar="NAME",
                   help="train only this run (one job of `experiment submit`); refused while its parent "
                        "has not finished")
    r.add_argument("--wait_for_parent", action="store_true",
                   help="with --run: wait until the parent has finished instead of refusing (TPU chains)")
    r.add_argument("--allow_config_change", action="store_true",
                   help="reuse and resume runs trained under another model, data, optimizer, schedule, batch or "
                        "seed setting (recorded in each run's lineage.json); without it such runs are refused")
    from codemix.train.distributed import add_distributed_arguments

    add_distributed_arguments(r)

    s = sub.add_parser("submit", help="submit one job per run to SLURM (or plan TPU queued resources), each "
                                      "after its parent's",
                       epilog="examples:\n"
                              "  codemix experiment submit gin/experiments/paper.gin --workdir /shared/paper --to slurm \\\n"
                              "      --gpus_per_node 8 --partition gpu --dry_run\n"
                              "  codemix experiment submit gin/experiments/paper.gin --workdir gs://BUCKET/paper --to tpu \\\n"
                              "      --name paper --zone us-central2-b --accelerator v4-32 --dry_run")
    s.add_argument("gin_file", help="experiment gin, e.g. gin/experiments/paper.gin")
    s.add_argument("--workdir", required=True, help="experiment directory on storage every job sees")
    s.add_argument("--to", required=True, choices=("slurm", "tpu"), help="where the jobs run")
    s.add_argument("--only", nargs="+", default=None, metavar="VARIANT", help="only these variants")
    s.add_argument("--gin_param", action="append", default=[], help="binding for the experiment gin")
    s.add_argument("--run_param", action="append", default=[], help="binding added to every run's gin")
    s.add_argument("--dry_run", action="store_true", help="print the job scripts / gcloud commands, submit nothing")
    g = s.add_argument_group("--to slurm")
    g.add_argument("--nodes", type=int, default=1, help="nodes per job (= JAX processes)")
    g.add_argument("--gpus_per_node", type=int, default=8, help="GPUs per node (0: none)")
    g.add_argument("--cpus_per_task", type=int, default=32)
    g.add_argument("--time", default="24:00:00", help="wall-clock limit per job (a requeue restarts it)")
    g.add_argument("--partition", default=None)
    g.add_argument("--account", default=None)
    g.add_argument("--log_dir", default=None, help="job logs (default: WORKDIR/slurm_logs)")
    t = s.add_argument_group("--to tpu")
    t.add_argument("--name", default="codemix", help="prefix of the queued resources' names")
    t.add_argument("--zone", default=None)
    t.add_argument("--accelerator", default=None, help="e.g. v4-32")
    t.add_argument("--project", default=None)

    st = sub.add_parser("status", help="each run's state, job, step, tokens, heartbeat; the critical path left")
    st.add_argument("workdir", help="experiment directory")
    st.add_argument("--json", action="store_true", help="print JSON")


def _submit(args) -> int:
    from codemix.experiments import jobs, runner

    exp = runner.load_experiment(args.gin_file, args.gin_param)
    rows = runner.plan(exp, runner.select(exp, args.only))
    jobs.check_plan(args.workdir, rows, args.gin_file)
    if not args.dry_run:
        from etils import epath

        root = epath.Path(args.workdir)
        root.mkdir(parents=True, exist_ok=True)
        if not (root / "plan.json").exists():
            (root / "plan.json").write_text(json.dumps(rows, indent=2))
    only = [a for v in (args.only or []) for a in ("--only", v)]
    if args.to == "slurm":
        job_args = {"nodes": args.nodes, "gpus_per_node": args.gpus_per_node, "cpus_per_task": args.cpus_per_task,
                    "time": args.time, "partition": args.partition, "account": args.account}
        if args.log_dir:
            job_args["log_dir"] = args.log_dir
        jobs.submit_slurm(args.gin_file, args.workdir, rows, gin_params=args.gin_param, run_params=args.run_param,
                          dry_run=args.dry_run, job_args=job_args, extra=only)
        return 0
    if not (args.zone and args.accelerator):
        from codemix.errors import ExperimentError

        raise ExperimentError("--to tpu needs --zone and --accelerator (e.g. --zone us-central2-b --accelerator v4-32).")
    from codemix.launch import tpu

    for name, argvs in jobs.tpu_commands(args.gin_file, args.workdir, rows, name=args.name, zone=args.zone,
                                         accelerator=args.accelerator, project=args.project,
                                         gin_params=args.gin_param, run_params=args.run_param, extra=only):
        print(f"# chain {name}")
        for argv in argvs:
            print(tpu.shell(argv))
    if not args.dry_run:
        print("# run these commands (gcloud is not run for you); follow a chain with "
              "`codemix launch tpu --name NAME --zone Z --accelerator A --log_file codemix-NAME.log --logs`")
    return 0


def _status(args) -> int:
    from codemix.experiments import status

    doc = status.collect(args.workdir)
    print(json.dumps(doc, indent=2) if args.json else status.format_status(doc))
    return 0


def run(args) -> int:
    if args.experiment_command == "submit":
        return _submit(args)
    if args.experiment_command == "status":
        return _status(args)
    from codemix.train.distributed import init_distributed

    init_distributed(args)
    from codemix.experiments import runner

    if args.dry_run:
        exp = runner.load_experiment(args.gin_file, args.gin_param)
        rows = runner.plan(exp, runner.select(exp, args.only))
        print(json.dumps(rows, indent=2) if args.json else runner.format_plan(rows))
        return 0
    if args.wait_for_parent and args.run:
        from codemix.experiments import jobs
        from codemix.experiments.matrix import expand

        exp = runner.load_experiment(args.gin_file, args.gin_param)
        jobs.wait_for_parent(args.workdir, jobs.pick_run(expand(runner.select(exp, args.only), exp.seeds),
                                                          args.run, args.gin_file))
    runner.run_experiment(args.gin_file, args.workdir, only=args.only, gin_params=args.gin_param,
                          run_params=args.run_param, allow_config_change=args.allow_config_change, run=args.run)
    return 0
