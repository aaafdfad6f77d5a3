"""What checkpoint integrity costs the train loop, printed as JSON.

    python benchmarks/checkpoint_hashing.py [--model small] [--saves 4]
        [--train_seconds 3] [--restore_processes 2]

Saves the `--model` model's real train state (float32 parameters and AdamW
moments, random values so nothing compresses) `--saves` times through
`codemix.train.checkpointing.Checkpointer` (async, keep 2), with
`--train_seconds` of simulated training between saves, and reports:

  save_block_seconds   how long each `save()` call held the training thread
  close_seconds        the final `close()` (the loop's `checkpoint_wait`)
  hashed_bytes_training_thread / _background   SHA-256 input read on the
                       training thread and on other threads, per save
  hash_seconds_training_thread / _background   the seconds spent hashing
                       there, per save (the part of a save's block that
                       hashing is, whatever else loads the machine)
Then `--restore_processes` processes (0: none) joined by jax.distributed (gloo CPU
collectives on localhost, one device each) restore the newest checkpoint
as a resume does, and each reports the bytes it hashed to verify it and the
seconds its restore took.

Bytes are counted by wrapping checkpoint_integrity._sha256, the one function
every manifest write and check reads files through, so the script measures
any version of codemix the same way: run it with PYTHONPATH at an older
checkout to get the "before" figures. Timings depend on the disk and the
load on the machine; compare runs made one after the other on one host.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _count_hashing():
    """Wrap _sha256; returns {thread kind: bytes}."""
    from codemix.train import checkpoint_integrity as ci

    counts: dict[str, float] = defaultdict(float)
    real = ci._sha256

    def counted(path):
        kind = "training_thread" if threading.current_thread() is threading.main_thread() else "background"
        counts[kind] += path.stat().length
        start = time.perf_counter()
        try:
            return real(path)
        finally:
            counts[kind + "_seconds"] += time.perf_counter() - start

    ci._sha256 = counted
    return counts


def _abstract_state(model: str):
    import jax

    import codemix.registry  # noqa: F401
    import gin
    from codemix import config as cm_config
    from codemix.model.config import ModelConfig
    from codemix.train import partitioning
    from codemix.train.optimizer import make_optimizer, make_schedule
    from codemix.train.state import state_layout

    gin.clear_config()
    cm_config.parse([str(REPO / f"gin/models/{model}.gin")], finalize=False)
    cfg = ModelConfig().replace(dtype="float32")
    optimizer = make_optimizer(make_schedule(total_steps=100, peak=1e-3, warmup_steps=1))
    mesh = partitioning.make_mesh(num_devices=len(jax.devices()))
    layout = state_layout(cfg, optimizer, mesh)
    return {"params": layout.abstract_params, "opt_state": layout.abstract_opt_state}


class _Position:
    """The data iterator's part of a checkpoint: one small file per process."""

    def __init__(self, processes: int = 1):
        self.global_batch_size, self.local_batch_size = processes, 1

    def save(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "position").write_text("0")

    def restore(self, path):
        pass


def _saves(args, workdir: str) -> dict:
    import jax
    import numpy as np

    from codemix.train.checkpointing import Checkpointer

    counts = _count_hashing()
    abstract = _abstract_state(args.model)
    rng = np.random.default_rng(0)
    state = jax.tree.map(lambda a: jax.numpy.asarray(rng.standard_normal(a.shape).astype(a.dtype))
                         if np.issubdtype(a.dtype, np.floating) else jax.numpy.zeros(a.shape, a.dtype), abstract)
    nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
    ckpt = Checkpointer(workdir, save_every=1, keep=2, async_save=True)
    blocked = []
    for i in range(1, args.saves + 1):
        time.sleep(args.train_seconds)  # the steps between two saves
        jax.block_until_ready(state)
        start = time.perf_counter()
        ckpt.save(i, state, _Position(), {"tokens": i, "process_count": max(args.restore_processes, 1)})
        blocked.append(time.perf_counter() - start)
    start = time.perf_counter()
    ckpt.close()
    close = time.perf_counter() - start
    return {
        "state_bytes": nbytes,
        "save_block_seconds": [round(x, 3) for x in blocked],
        "save_block_seconds_mean": round(sum(blocked) / len(blocked), 3),
        "close_seconds": round(close, 3),
        "hashed_bytes_training_thread_per_save": int(counts["training_thread"] // args.saves),
        "hashed_bytes_background_per_save": int(counts["background"] // args.saves),
        "hash_seconds_training_thread_per_save": round(counts["training_thread_seconds"] / args.saves, 3),
        "hash_seconds_background_per_save": round(counts["background_seconds"] / args.saves, 3),
    }


def _restore_worker(args) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.restore_processes,
                               process_id=args.process_id)
    from jax.sharding import NamedSharding, PartitionSpec

    from codemix.train.checkpointing import Checkpointer

    counts = _count_hashing()
    abstract = _abstract_state(args.model)
    replicated = NamedSharding(jax.sharding.Mesh(jax.devices(), ("x",)), PartitionSpec())
    shardings = {"step": replicated, **{k: jax.tree.map(lambda _: replicated, v) for k, v in abstract.items()}}
    ckpt = Checkpointer(args.restore_worker, save_every=1, keep=None)
    start = time.perf_counter()
    ckpt.restore(args.saves, abstract, shardings, _Position(args.restore_processes))
    seconds = time.perf_counter() - start
    ckpt.close()
    print(json.dumps({"process": jax.process_index(),
                      "hashed_bytes": int(counts["training_thread"] + counts["background"]),
                      "restore_seconds": round(seconds, 3)}))


def _restores(args, workdir: str) -> list[dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    procs = [subprocess.Popen([sys.executable, __file__, "--model", args.model, "--saves", str(args.saves),
                               "--restore_processes", str(args.restore_processes),
                               "--restore_worker", workdir, "--coordinator", f"127.0.0.1:{port}",
                               "--process_id", str(pid)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for pid in range(args.restore_processes)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=1200)
        if p.returncode != 0:
            raise SystemExit(f"restore worker failed:\n{stderr[-3000:]}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return sorted(out, key=lambda r: r["process"])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="small")
    ap.add_argument("--saves", type=int, default=4)
    ap.add_argument("--train_seconds", type=float, default=3.0)
    ap.add_argument("--restore_processes", type=int, default=2)
    ap.add_argument("--restore_worker", help=argparse.SUPPRESS)
    ap.add_argument("--coordinator", help=argparse.SUPPRESS)
    ap.add_argument("--process_id", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.restore_worker:
        _restore_worker(args)
        return
    import subprocess as sp

    commit = sp.run(["git", "-C", str(Path(__import__("codemix").__file__).parents[1]), "describe", "--always",
                     "--dirty"], capture_output=True, text=True, check=False).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="codemix-hash-bench-") as workdir:
        result = {"model": args.model, "codemix_commit": commit, "saves": args.saves,
                  "train_seconds_between_saves": args.train_seconds, **_saves(args, workdir)}
        if args.restore_processes:
            result["restore"] = _restores(args, workdir)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
