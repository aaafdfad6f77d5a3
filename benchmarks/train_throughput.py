"""Train-step throughput and MFU for named model sizes, printed as JSON.

    python benchmarks/train_throughput.py [--models tiny,small] [--steps 5]
        [--batch 16] [--accum 1] [--seq_len 512] [--dtype float32]
    python benchmarks/train_throughput.py --vs_torch [--torch_python PATH]
        [--alternations 3] [--accum 4] [--torch_accum 4] [--torch_compile]

For each model: tokens/s, step time, training FLOPs per token (6N + attention,
codemix.model.info), this host's measured matmul peak (same process, same
dtype) and MFU = achieved FLOP/s / peak. Batches are random tokens in full
rows: packing does not change the step's cost. Runs the real jitted,
sharded train step (AdamW, clipping) over all local devices.

--vs_torch runs `small` in codemix and in benchmarks/torch_reference.py
(PyTorch, same architecture, FLOPs, batch and update) alternately, each run a
fresh subprocess with the same intra-op thread count, and prints both tokens/s
per alternation, their medians and the ratio codemix / torch with its spread
(the min and max of the per-alternation ratios). The load on the host moves
both alike when they alternate; compare ratios, not absolute figures. Each
torch run computes MFU against the peak the codemix run before it measured.
torch lives in its own venv (see benchmarks/torch_reference.py's docstring).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
from codemix import config as cm_config
from codemix.model.config import ModelConfig
from codemix.model.info import model_info
from codemix.train import partitioning
from codemix.train.metrics import PEAK_FLOPS, measure_matmul_peak
from codemix.train.optimizer import make_optimizer, make_schedule
from codemix.train.state import fresh_state, state_layout
from codemix.train.step import jit_train_step, make_train_step


def _cpu_peak(dtype: str) -> float:
    mm_dtype = jnp.float32 if dtype == "float32" else jnp.bfloat16
    return max(measure_matmul_peak(n, repeats=5, dtype=mm_dtype) for n in (1024, 2048, 4096))


def bench(name: str, steps: int, batch: int, seq_len: int, dtype: str, remat: str | None,
          accum: int = 1, overrides: dict | None = None) -> dict:
    import gin

    gin.clear_config()
    cm_config.parse([f"gin/models/{name}.gin"], finalize=False)
    cfg = ModelConfig().replace(dtype=dtype, **(overrides or {}))
    if remat:
        cfg = cfg.replace(remat=remat)
    mesh = partitioning.make_mesh()
    schedule = make_schedule(1000, "cosine", peak=1e-4, warmup_steps=10)
    opt = make_optimizer(schedule)
    layout = state_layout(cfg, opt, mesh)
    bsh = layout.batch_shardings
    state = fresh_state(cfg, opt, layout, seed=0)
    step = jit_train_step(make_train_step(cfg, opt, schedule, 1, accum, layout.row_sharding),
                          layout.shardings, bsh, mesh)
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, cfg.vocab_size, (batch, seq_len), dtype=np.int32)
    host = {
        "decoder_input_tokens": tokens,
        "decoder_target_tokens": np.roll(tokens, -1, axis=1),
        "decoder_segment_ids": np.ones((batch, seq_len), np.int32),
        "decoder_positions": np.broadcast_to(np.arange(seq_len, dtype=np.int32), (batch, seq_len)).copy(),
        "decoder_loss_weights": np.ones((batch, seq_len), np.float32),
        "source_id": np.zeros((batch,), np.int32),
        "epoch": np.zeros((batch,), np.int32),
    }
    b = {k: jax.device_put(v, bsh[k]) for k, v in host.items()}
    peak_before = _cpu_peak(dtype) if jax.devices()[0].platform == "cpu" else 0.0
    t0 = time.perf_counter()
    state, m = step(state, b)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    state, m = step(state, b)  # one warm step
    jax.block_until_ready(m)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, m = step(state, b)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    step_time = float(np.median(times))
    info = model_info(cfg, seq_len)
    tokens_per_sec = batch * seq_len / step_time
    kind = jax.devices()[0].device_kind
    if jax.devices()[0].platform == "cpu":
        # The best of several sizes, so MFU is against the fastest matmul this
        # host manages, not a lucky or unlucky single shape.
        # Measured before and after the timed steps, best kept.
        peak = max(peak_before, _cpu_peak(dtype))
        peak_source = f"measured:{dtype}-matmul-best-of-1024/2048/4096-before-and-after"
    else:
        peak = next((v for k, v in PEAK_FLOPS.items() if k in kind.lower()), None) or measure_matmul_peak(
            8192, dtype=jnp.bfloat16)
        peak_source = "datasheet" if any(k in kind.lower() for k in PEAK_FLOPS) else "measured"
    peak_total = peak * jax.device_count()
    return {
        "model": name,
        "params": info.total_params,
        "dtype": dtype,
        "remat": cfg.remat,
        "batch": batch,
        "grad_accum_steps": accum,
        "attention_block": cfg.attention_block,
        "seq_len": seq_len,
        "devices": jax.device_count(),
        "device_kind": kind,
        "compile_s": round(compile_s, 2),
        "step_time_s": step_time,
        "step_times_s": times,
        "tokens_per_sec": tokens_per_sec,
        "flops_per_token": info.flops_per_token,
        "achieved_flops_per_sec": tokens_per_sec * info.flops_per_token,
        "peak_flops_per_sec": peak_total,
        "peak_source": peak_source,
        "mfu": tokens_per_sec * info.flops_per_token / peak_total,
        "final_loss": float(m["loss"]),
    }


def _child_json(cmd: list[str], what: str) -> dict:
    """Run one benchmark subprocess; its stdout is the JSON document."""
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout[proc.stdout.index("{"):])["results"][0]


def vs_torch(args) -> dict:
    """Alternate codemix and the PyTorch reference on `small` (see module doc)."""
    torch_python = args.torch_python or os.environ.get("CODEMIX_TORCH_PYTHON")
    if not torch_python or not os.path.exists(torch_python):
        raise SystemExit(
            "--vs_torch needs a Python with torch: pass --torch_python PATH (or set "
            "CODEMIX_TORCH_PYTHON); make one with the commands in benchmarks/torch_reference.py's docstring.")
    here = os.path.dirname(os.path.abspath(__file__))
    threads = args.threads or os.cpu_count()
    common = ["--batch", str(args.batch), "--seq_len", str(args.seq_len), "--steps", str(args.steps)]
    ours_cmd = [sys.executable, os.path.join(here, "train_throughput.py"), "--models", "small",
                "--accum", str(args.accum), *common]
    for kv in args.model_param:
        ours_cmd += ["--model_param", kv]
    rows, peak = [], None
    for i in range(args.alternations):
        ours = _child_json(ours_cmd, "codemix run")
        peak = ours["peak_flops_per_sec"]
        row = {"codemix_tokens_per_sec": ours["tokens_per_sec"], "codemix_mfu": ours["mfu"],
               "peak_flops_per_sec": peak, "load_1min": os.getloadavg()[0]}
        for mode in ["eager"] + (["compile"] if args.torch_compile else []):
            cmd = [torch_python, os.path.join(here, "torch_reference.py"), "--accum", str(args.torch_accum),
                   "--threads", str(threads), "--peak_flops", str(peak), *common]
            theirs = _child_json(cmd + (["--compile"] if mode == "compile" else []), f"torch {mode} run")
            row[f"torch_{mode}_tokens_per_sec"] = theirs["tokens_per_sec"]
            row[f"torch_{mode}_mfu"] = theirs["mfu"]
            row[f"ratio_vs_{mode}"] = ours["tokens_per_sec"] / theirs["tokens_per_sec"]
            row["torch_framework"] = theirs["framework"].rsplit(" ", 1)[0]
        rows.append(row)
        print(f"alternation {i + 1}/{args.alternations}: " + json.dumps(row), file=sys.stderr, flush=True)
    summary = {"codemix_tokens_per_sec": float(np.median([r["codemix_tokens_per_sec"] for r in rows])),
               "codemix_mfu": float(np.median([r["codemix_mfu"] for r in rows]))}
    for mode in ["eager"] + (["compile"] if args.torch_compile else []):
        ratios = [r[f"ratio_vs_{mode}"] for r in rows]
        summary[f"torch_{mode}_tokens_per_sec"] = float(np.median([r[f"torch_{mode}_tokens_per_sec"] for r in rows]))
        summary[f"ratio_vs_{mode}"] = float(np.median(ratios))
        summary[f"ratio_vs_{mode}_min_max"] = [min(ratios), max(ratios)]
    return {"model": "small", "batch": args.batch, "seq_len": args.seq_len, "codemix_accum": args.accum,
            "torch_accum": args.torch_accum, "threads": threads, "alternations": rows, "summary": summary}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tiny,small")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq_len", type=int, default=512)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--remat", default=None)
    p.add_argument("--model_param", action="append", default=[],
                   help="ModelConfig override NAME=VALUE (int), e.g. attention_block=64; repeatable")
    p.add_argument("--accum", type=int, default=None,
                   help="gradient accumulation microbatches per step (batch / accum rows each; "
                        "default 1, or 4 with --vs_torch)")
    p.add_argument("--vs_torch", action="store_true", help="alternate with benchmarks/torch_reference.py")
    p.add_argument("--torch_python", default=None, help="the Python that has torch (--vs_torch)")
    p.add_argument("--torch_accum", type=int, default=4, help="torch microbatches per step (--vs_torch)")
    p.add_argument("--torch_compile", action="store_true", help="also time torch.compile (--vs_torch)")
    p.add_argument("--alternations", type=int, default=3, help="codemix/torch pairs (--vs_torch)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (--vs_torch; default os.cpu_count(), as XLA:CPU uses)")
    args = p.parse_args()
    head = {"host": platform.node(), "cpu_count": os.cpu_count(), "jax": jax.__version__}
    if args.vs_torch:
        args.accum = args.accum or 4
        print(json.dumps({**head, "vs_torch": vs_torch(args)}, indent=2))
        return
    results = [bench(m, args.steps, args.batch, args.seq_len, args.dtype, args.remat, args.accum or 1,
                     {k: int(v) for k, v in (kv.split("=", 1) for kv in args.model_param)})
               for m in args.models.split(",")]
    print(json.dumps({**head, "results": results}, indent=2))


if __name__ == "__main__":
    main()
