"""Joining a multi-host job: the `jax.distributed` flags shared by `codemix train`,
`codemix eval` and `codemix experiment run`, and the call they make.

Every process of a job runs the same command line; with --distributed JAX
detects the cluster (TPU VMs, SLURM), with --coordinator_address the processes
are named explicitly (two local processes in the tests, with gloo CPU collectives).
"""
from __future__ import annotations


def add_distributed_arguments(p):
    g = p.add_argument_group("multi-host (jax.distributed)")
    g.add_argument("--distributed", action="store_true",
                   help="Call jax.distributed.initialize() with cluster auto-detection (TPU VMs, SLURM).")
    g.add_argument("--coordinator_address", default=None, help="host:port of process 0.")
    g.add_argument("--num_processes", type=int, default=None)
    g.add_argument("--process_id", type=int, default=None)
    g.add_argument("--cpu_collectives", default=None,
                   help="CPU collectives implementation for multi-process CPU runs (gloo).")


JOINED = False  # set once this process has joined a jax.distributed job


def init_distributed(args) -> None:
    import jax

    # The train loop agrees on stops itself (codemix/train/stop.py); JAX's preemption
    # service would install a C++ SIGTERM handler that swallows a signal sent before the loop.
    jax.config.update("jax_enable_preemption_service", False)
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
    else:
        return
    global JOINED
    JOINED = True


def leave_distributed(rc: int) -> None:
    """Ends a process that joined a multi-process job, once its command has returned.

    Every process leaves through `jax.distributed.shutdown()` (a barrier, so the coordinator
    on process 0 outlives the others), then exits without the interpreter's teardown: a
    TensorFlow data iterator finalized at exit was seen to hang a process after training had
    finished and checkpointed. Output streams and logging are flushed first.
    """
    if not JOINED:
        return
    import logging
    import os
    import sys

    import jax

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    if rc == 0:  # a failed process may have left the others; don't wait on a barrier then
        jax.distributed.shutdown()
    os._exit(rc)
