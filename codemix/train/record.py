"""One metrics.jsonl line from the steps since the last one.

The train step returns per-source sums (loss, tokens, repeated rows) as
device arrays; `StepMetrics` keeps them unfetched until a log step, then
fetches them in one `device_get`, adds the token and repeated-row counts to
the run's running totals (`meta`, which checkpoints carry so a resumed run
continues the counts) and builds the line: overall and per-source loss,
tokens per source, throughput and MFU of the train steps alone.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np


def fresh_meta(num_sources: int) -> dict:
    """Running totals of a run that starts at step 0 (what checkpoints' meta/ holds)."""
    return {"tokens": 0, "tokens_by_source": [0.0] * num_sources,
            "repeated_rows_by_source": [0] * num_sources, "process_count": jax.process_count()}


class StepMetrics:
    """Collects step metrics between log steps and turns them into a record.

    Args:
      names: source names, in the order of the step's per-source arrays.
      meta: the running totals (updated in place by `record`).
      tokens_per_step: batch rows x sequence length (slots, padding included).
      flops_per_token: model FLOPs per token (for MFU).
      total_peak: peak FLOP/s of all devices together.
    """

    def __init__(self, names: Sequence[str], meta: dict, tokens_per_step: int,
                 flops_per_token: float, total_peak: float):
        self.names = list(names)
        self.meta = meta
        self.tokens_per_step = tokens_per_step
        self.flops_per_token = flops_per_token
        self.total_peak = total_peak
        self.pending: list[dict] = []
        self.extra: dict = {}

    def add(self, metrics: dict) -> None:
        """One step's (device) metrics, not fetched yet."""
        self.pending.append(metrics)

    def record(self, step: int, steps: int, seconds: float) -> tuple[dict, list[dict]]:
        """The line for the `steps` steps ending at `step`, which took `seconds`
        of train-step time; also returns the fetched per-step metrics."""
        got = jax.device_get(self.pending)
        self.pending = []
        dt = max(seconds, 1e-9)
        n = len(self.names)  # the step's per-source sums may have spare (zero) slots after them
        loss_s = np.sum([m["loss_sum_by_source"][:n] for m in got], axis=0)
        tok_s = np.sum([m["tokens_by_source"][:n] for m in got], axis=0)
        rep_s = np.sum([m["repeated_rows_by_source"][:n] for m in got], axis=0)
        meta = self.meta
        meta["repeated_rows_by_source"] = [int(a + b) for a, b in zip(meta["repeated_rows_by_source"], rep_s)]
        meta["tokens_by_source"] = [a + float(b) for a, b in zip(meta["tokens_by_source"], tok_s)]
        meta["tokens"] = float(sum(meta["tokens_by_source"]))
        slots = steps * self.tokens_per_step
        line = {
            "step": step,
            "tokens": meta["tokens"],
            "loss": float(loss_s.sum() / max(tok_s.sum(), 1.0)),
            "lr": float(got[-1]["lr"]),
            "grad_norm": float(got[-1]["grad_norm"]),
            "tokens_per_sec": float(tok_s.sum() / dt),
            "step_time": dt / steps,
            "mfu": float(self.flops_per_token * slots / dt / self.total_peak),
        }
        for i, n in enumerate(self.names):
            if tok_s[i] > 0:
                line[f"loss/{n}"] = float(loss_s[i] / tok_s[i])
            line[f"tokens/{n}"] = meta["tokens_by_source"][i]
            if meta["repeated_rows_by_source"][i]:
                line[f"repeated_rows/{n}"] = meta["repeated_rows_by_source"][i]
        line.update(self.extra)
        self.extra = {}
        return line, got
