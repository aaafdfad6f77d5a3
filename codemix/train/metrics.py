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
        from codemix import storage

        self.enabled = enabled and jax.process_index() == 0
        self._tb = None
        self._file = None
        self._tb_dir = storage.path(workdir) / "tensorboard"
        self._tb_ram = None  # a URL workdir: events are written to ram:// and copied (storage.py)
        if self.enabled:
            storage.path(workdir).mkdir(parents=True, exist_ok=True)
            self._file = storage.LineLog(storage.path(workdir) / "metrics.jsonl")
            try:
                import tensorflow as tf

                if storage.is_url(workdir):
                    self._tb_ram = f"ram://codemix-tb/{os.getpid()}-{id(self)}"
                self._tb = tf.summary.create_file_writer(self._tb_ram or os.fspath(self._tb_dir))
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
            self._sync_tb()

    def _sync_tb(self) -> None:
        """On a URL workdir: the events written so far, copied whole (GCS can't append)."""
        if self._tb_ram is None:
            return
        from codemix import storage

        self._tb.flush()
        storage.copy_tf_files(self._tb_ram, self._tb_dir)

    def close(self) -> None:
        if self._file:
            self._file.close()
        if self._tb is not None:
            self._tb.flush()
            self._sync_tb()
            self._tb.close()
            if self._tb_ram is not None:
                import tensorflow as tf

                tf.io.gfile.rmtree(self._tb_ram)


def read_metrics(workdir: str) -> list[dict]:
    from codemix import storage

    path = storage.path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
