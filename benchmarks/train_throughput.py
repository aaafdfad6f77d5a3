"""Train-step throughput and MFU for named model sizes, printed as JSON.

    python benchmarks/train_throughput.py [--models tiny,small] [--steps 5]
        [--batch 16] [--accum 1] [--seq_len 512] [--dtype float32]

For each model: tokens/s, step time, training FLOPs per token (6N + attention,
codemix.model.info), this host's measured matmul peak (same process, same
dtype) and MFU = achieved FLOP/s / peak. Batches are random tokens in full
rows: packing does not change the step's cost. Runs the real jitted,
sharded train step (AdamW, clipping) over all local devices.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

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
        "tokens_per_sec": tokens_per_sec,
        "flops_per_token": info.flops_per_token,
        "achieved_flops_per_sec": tokens_per_sec * info.flops_per_token,
        "peak_flops_per_sec": peak_total,
        "peak_source": peak_source,
        "mfu": tokens_per_sec * info.flops_per_token / peak_total,
        "final_loss": float(m["loss"]),
    }


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
    p.add_argument("--accum", type=int, default=1,
                   help="gradient accumulation microbatches per step (batch / accum rows each)")
    args = p.parse_args()
    results = [bench(m, args.steps, args.batch, args.seq_len, args.dtype, args.remat, args.accum,
                     {k: int(v) for k, v in (kv.split("=", 1) for kv in args.model_param)})
               for m in args.models.split(",")]
    print(json.dumps({"host": platform.node(), "cpu_count": os.cpu_count(),
                      "jax": jax.__version__, "results": results}, indent=2))


if __name__ == "__main__":
    main()
