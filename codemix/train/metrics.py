"""Metric writers (metrics.jsonl, TensorBoard) and hardware peak FLOP/s."""
from __future__ import annotations

import json
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

# Dense peak FLOP/s per chip for the compute dtype training uses (bf16), from
# the vendors' data sheets. CPUs have no such number: it is measured.
PEAK_FLOPS = {
    "h100": 989e12,
    "h200": 989e12,
    "a100": 312e12,
    "tpu v4": 275e12,
    "tpu v5 lite": 197e12,
    "tpu v5e": 197e12,
    "tpu v5p": 459e12,
    "tpu v5": 459e12,
    "tpu v6 lite": 918e12,
}


def measure_matmul_peak(n: int = 2048, repeats: int = 5, dtype=jnp.float32) -> float:
    """Best achieved FLOP/s of an n x n matmul on the default device, per device."""
    a = jnp.ones((n, n), dtype)
    b = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x, y: x @ y)
    f(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def peak_flops_per_device(override: float | None = None) -> tuple[float, str]:
    """(peak FLOP/s per device, how it was obtained)."""
    if override:
        return float(override), "configured"
    kind = jax.devices()[0].device_kind.lower()
    for key, value in PEAK_FLOPS.items():
        if key in kind:
            return value, f"datasheet:{key}"
    return measure_matmul_peak(), "measured:f32-matmul"


class MetricWriter:
    """Writes one JSON object per log step to metrics.jsonl, and the scalars
    to TensorBoard. Only process 0 writes."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled and jax.process_index() == 0
        self._tb = None
        self._file = None
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            self._file = open(os.path.join(workdir, "metrics.jsonl"), "a", buffering=1)
            try:
                import tensorflow as tf

                self._tb = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
            except Exception as e:  # TensorBoard is optional; the JSONL file is not.
                logging.warning("TensorBoard writer unavailable (%s); metrics.jsonl only.", e)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        clean = {k: (float(v) if isinstance(v, (np.floating, np.integer, float)) else v) for k, v in record.items()}
        self._file.write(json.dumps(clean, sort_keys=True) + "\n")
        if self._tb is not None:
            import tensorflow as tf

            with self._tb.as_default(step=int(record["step"])):
                for k, v in clean.items():
                    if k != "step" and isinstance(v, (int, float)):
                        tf.summary.scalar(k, v)

    def close(self) -> None:
        if self._file:
            self._file.close()
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
