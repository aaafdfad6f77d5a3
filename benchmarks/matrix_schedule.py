"""The paper's matrix as one process against a graph of jobs, in days, printed as JSON.

    python benchmarks/matrix_schedule.py [--accelerator v4-32] [--mfu 0.4] [--slices 1 4 8]

For gin/experiments/paper.gin at 470m and 2p8b (runtime gin/runtime/tpu_v4.gin,
512 x 2048 tokens a step) it takes each run's steps from the experiment's plan
and the step time from the planner (codemix/train/planner.py: FLOPs per step /
(chips x datasheet peak x MFU)), and prints per model size:

- serial_days: `codemix experiment run`, one run after another on one slice
  (the same on any number of slices: it uses one);
- critical_path_days: the longest parent -> child chain, the least any number of
  slices can take;
- job_graph_days[S]: `codemix experiment submit`'s graph on S slices, scheduled
  greedily (a run starts as soon as its parent finished and a slice is free,
  longest remaining chain first): a list schedule, within a factor 2 of optimal
  and here equal to the critical path once S covers the widest level.

No evaluation, compile or start-up time is counted: only training steps.
"""
from __future__ import annotations

import argparse
import heapq
import json
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

MODELS = {"470m": "gin/models/470m.gin", "2p8b": "gin/models/2p8b.gin"}
DAY = 86400.0


def step_seconds(model_gin: str, runtime_gin: str, exp, accelerator: str, mfu: float) -> float:
    import codemix.registry  # noqa: F401
    import gin
    from codemix import config
    from codemix.commands.plan import PEAK
    from codemix.model.config import ModelConfig
    from codemix.train import planner, tpu_compile

    gin.clear_config()
    config.parse([model_gin, runtime_gin], list(exp.bindings), finalize=False)
    try:
        cfg = ModelConfig()
        mesh_spec = {"data": 1, "fsdp": -1, "tensor": 1}
        try:
            mesh_spec.update({k: v for k, v in gin.get_bindings("make_mesh").items() if k in mesh_spec})
        except (ValueError, KeyError):
            pass
        chip, devices = tpu_compile.parse_slice(accelerator)
        mesh = planner.mesh_shape(num_devices=devices, **mesh_spec)
        p = planner.plan(cfg, exp.batch_size, exp.sequence_length, mesh, peak_flops=PEAK[chip.generation],
                         mfu=mfu, backend="tpu", train_steps=1)
    finally:
        gin.clear_config()
    return p.step_time_s


def schedule(rows: list[dict], seconds: dict[str, float], slices: int) -> float:
    """Makespan of a greedy list schedule of the run graph on `slices` slices."""
    children: dict[str | None, list[str]] = {}
    for r in rows:
        children.setdefault(r["parent"], []).append(r["run"])
    tail: dict[str, float] = {}  # longest chain from a run to a leaf, the run included
    for r in reversed(rows):  # plan order is dependency order
        tail[r["run"]] = seconds[r["run"]] + max((tail[c] for c in children.get(r["run"], [])), default=0.0)
    ready = [(-tail[c], c) for c in children.get(None, [])]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []  # (finish time, run)
    now, free = 0.0, slices
    while ready or running:
        while ready and free:
            _, run = heapq.heappop(ready)
            heapq.heappush(running, (now + seconds[run], run))
            free -= 1
        now, done = heapq.heappop(running)
        free += 1
        for c in children.get(done, []):
            heapq.heappush(ready, (-tail[c], c))
    return now


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--accelerator", default="v4-32")
    ap.add_argument("--runtime_gin", default="gin/runtime/tpu_v4.gin")
    ap.add_argument("--mfu", type=float, default=0.4)
    ap.add_argument("--slices", type=int, nargs="+", default=[1, 4, 8])
    args = ap.parse_args()
    from codemix.experiments import runner

    out = {"accelerator": args.accelerator, "mfu": args.mfu, "runtime_gin": args.runtime_gin, "models": {}}
    for size, model_gin in MODELS.items():
        exp = runner.load_experiment("gin/experiments/paper.gin",
                                     [f"Experiment.model_gin = '{model_gin}'",
                                      f"Experiment.runtime_gin = '{args.runtime_gin}'"])
        rows = runner.plan(exp, exp.variants)
        step = step_seconds(model_gin, args.runtime_gin, exp, args.accelerator, args.mfu)
        seconds = {r["run"]: r["steps"] * step for r in rows}
        critical = schedule(rows, seconds, slices=len(rows))  # a slice per run: only the chains bind
        out["models"][size] = {
            "runs": len(rows),
            "tokens": sum(r["tokens"] for r in rows),
            "step_seconds": round(step, 3),
            "serial_days": round(sum(seconds.values()) / DAY, 1),
            "critical_path_days": round(critical / DAY, 1),
            "critical_path_tokens": max(
                sum(r2["tokens"] for r2 in rows if r2["run"] == r["run"] or r["run"].startswith(r2["run"] + "__"))
                for r in rows),
            "job_graph_days": {str(s): round(schedule(rows, seconds, s) / DAY, 1) for s in args.slices},
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
