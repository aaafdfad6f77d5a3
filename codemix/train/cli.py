"""`codemix train`: one run from gin files (also `python -m codemix.main train`)."""
from __future__ import annotations

import json
import logging
import os
import sys


def add_arguments(p):
    p.add_argument("--gin_file", action="append", required=True,
                   help="Gin file(s), later ones override earlier ones.")
    p.add_argument("--gin_param", action="append", default=[],
                   help="A gin binding, e.g. TRAIN_STEPS=60 (repeatable).")
    p.add_argument("--workdir", required=True, help="Run directory; an existing one is resumed.")
    add_distributed_arguments(p)


def add_distributed_arguments(p):
    g = p.add_argument_group("multi-host (jax.distributed)")
    g.add_argument("--distributed", action="store_true",
                   help="Call jax.distributed.initialize() with cluster auto-detection (TPU VMs, SLURM).")
    g.add_argument("--coordinator_address", default=None, help="host:port of process 0.")
    g.add_argument("--num_processes", type=int, default=None)
    g.add_argument("--process_id", type=int, default=None)
    g.add_argument("--cpu_collectives", default=None,
                   help="CPU collectives implementation for multi-process CPU runs (gloo).")


def init_distributed(args) -> None:
    import jax

    if args.cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", args.cpu_collectives)
    if args.coordinator_address:
        jax.distributed.initialize(
            coordinator_address=args.coordinator_address,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    elif args.distributed:
        jax.distributed.initialize()


def run(args) -> int:
    init_distributed(args)
    from codemix import config
    from codemix.train.guards import NonFiniteLoss
    from codemix.train.trainer import Preempted, train

    import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
    config.parse(args.gin_file, args.gin_param)
    created = not os.path.exists(args.workdir)
    try:
        summary = train(workdir=args.workdir)
    except Preempted as e:
        return int(e.code)
    except NonFiniteLoss as e:
        print(f"codemix train: {e}", file=sys.stderr)
        return 3
    except BaseException:
        _remove_if_empty(args.workdir, created)
        raise
    logging.info("finished: %s", json.dumps(summary))
    print(json.dumps(summary))
    return 0


def _remove_if_empty(workdir: str, created: bool) -> None:
    """A run that failed before writing anything leaves no workdir behind."""
    if created and os.path.isdir(workdir) and not os.listdir(workdir):
        os.rmdir(workdir)
