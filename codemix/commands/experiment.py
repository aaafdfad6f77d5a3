"""`codemix experiment run F --workdir DIR [--only V ...] [--dry_run]`."""
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
    r.add_argument("--allow_config_change", action="store_true",
                   help="reuse and resume runs trained under another model, data, optimizer, schedule, batch or "
                        "seed setting (recorded in each run's lineage.json); without it such runs are refused")
    from codemix.train.distributed import add_distributed_arguments

    add_distributed_arguments(r)


def run(args) -> int:
    from codemix.train.distributed import init_distributed

    init_distributed(args)
    from codemix.experiments import runner

    if args.dry_run:
        exp = runner.load_experiment(args.gin_file, args.gin_param)
        rows = runner.plan(exp, runner.select(exp, args.only))
        print(json.dumps(rows, indent=2) if args.json else runner.format_plan(rows))
        return 0
    runner.run_experiment(args.gin_file, args.workdir, only=args.only, gin_params=args.gin_param,
                          run_params=args.run_param, allow_config_change=args.allow_config_change)
    return 0
