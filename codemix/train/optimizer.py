"""AdamW with a weight-decay mask, and the learning-rate schedules stages use.

Schedules are functions of the optimizer step (one step = one global batch,
after gradient accumulation):

  cosine:  linear warmup from 0 to `peak` over `warmup_steps`, then cosine
           from `peak` down to `peak * min_ratio` at `total_steps`.
  linear:  linear from `peak` to 0 at `total_steps` (cooldowns); optional warmup.
  constant: linear warmup, then `peak` forever.
  wsd:     warmup, stable at `peak`, then a linear decay to `peak * min_ratio`
           over the last `decay_fraction` of `total_steps`.
"""
from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

import gin

SCHEDULES = ("cosine", "linear", "constant", "wsd")


KIND_INDEX = {k: i for i, k in enumerate(SCHEDULES)}


class Schedule:
    """A learning-rate schedule whose numbers can be runtime inputs of the train step.

    `schedule(step)` evaluates it with its own numbers. `params()` gives those
    numbers (f32 scalars, the kind as an int32 index); inside the jitted step,
    `with schedule.reading(traced_params):` makes every call read them from the
    step's arguments instead of baking them in as constants. So stages that differ
    only in their schedule (init, continue, cooldown: peak, warmup, length, kind)
    compile one train step and hit the persistent compilation cache. The
    optimizer state (optax's step count) is the same either way, and so are the
    values: each kind's formula runs the same float32 operations on the same
    float32 numbers (derived ones are computed on the host in float64, as the
    constants were, and a division by a step count is a multiplication by its
    float32 reciprocal, which is what XLA made of a division by a constant).
    """

    def __init__(self, kind: str, total_steps: int, peak: float, warmup_steps: int, min_ratio: float,
                 decay_fraction: float, final_lr: float):
        self.kind, self.total_steps, self.peak = kind, total_steps, peak
        self.warmup_steps, self.min_ratio = warmup_steps, min_ratio
        self.decay_fraction, self.final_lr = decay_fraction, final_lr
        self._reading = None

    def __repr__(self) -> str:
        return (f"Schedule(kind={self.kind!r}, total_steps={self.total_steps}, peak={self.peak}, "
                f"warmup_steps={self.warmup_steps}, min_ratio={self.min_ratio}, "
                f"decay_fraction={self.decay_fraction}, final_lr={self.final_lr})")

    def params(self) -> dict:
        """The numbers the formulas read (host scalars; the same keys for every kind)."""
        rest = max(self.total_steps - self.warmup_steps, 1)
        decay_steps = max(round(self.total_steps * self.decay_fraction), 1)
        f32 = np.float32
        return {
            "kind": np.int32(KIND_INDEX[self.kind]),
            "peak": f32(self.peak),
            "warmup": f32(self.warmup_steps),
            "inv_warmup": f32(1) / f32(max(self.warmup_steps, 1)),
            "inv_rest": f32(1) / f32(rest),
            "min_ratio": f32(self.min_ratio),
            "cos_half_range": f32((1 - self.min_ratio) * 0.5),
            "final_lr": f32(self.final_lr),
            "linear_range": f32(self.peak - self.final_lr),
            "wsd_start": f32(self.total_steps - decay_steps),
            "inv_wsd_decay": f32(1) / f32(decay_steps),
            "wsd_drop": f32(1.0 - self.min_ratio),
        }

    @contextlib.contextmanager
    def reading(self, params: dict):
        """Within the block, calls read their numbers from `params` (e.g. traced arrays)."""
        previous, self._reading = self._reading, params
        try:
            yield
        finally:
            self._reading = previous

    def __call__(self, step):
        p = self._reading if self._reading is not None else self.params()
        step = jnp.asarray(step, jnp.float32)
        t = jnp.clip((step - p["warmup"]) * p["inv_rest"], 0.0, 1.0)
        cosine = p["peak"] * (p["min_ratio"] + p["cos_half_range"] * (1 + jnp.cos(jnp.pi * t)))
        linear = p["final_lr"] + p["linear_range"] * (1.0 - t)
        constant = jnp.broadcast_to(p["peak"], step.shape)
        d = jnp.clip((step - p["wsd_start"]) * p["inv_wsd_decay"], 0.0, 1.0)
        wsd = p["peak"] * (1.0 - p["wsd_drop"] * d)
        kind = p["kind"]
        after = jnp.where(kind == 0, cosine, jnp.where(kind == 1, linear, jnp.where(kind == 2, constant, wsd)))
        warm = p["peak"] * jnp.minimum(step * p["inv_warmup"], 1.0)
        return jnp.where(step < p["warmup"], warm, after)


@gin.configurable
def make_schedule(
    total_steps: int,
    kind: str = "cosine",
    peak: float = 3e-4,
    warmup_steps: int = 0,
    min_ratio: float = 0.1,
    decay_fraction: float = 0.2,
    final_lr: float = 0.0,
) -> Schedule:
    """Learning-rate schedule (a `Schedule`: callable on the step, see above).

    Args:
      total_steps: steps in this stage (derived from the stage's token budget).
      kind: "cosine", "linear" (to zero; cooldowns), "constant" or "wsd".
      peak: learning rate at the end of warmup.
      warmup_steps: steps of linear warmup from 0 (0 = start at `peak`).
      min_ratio: final LR as a fraction of `peak` for cosine and wsd (0.1 is
        the Chinchilla/Llama convention).
      decay_fraction: wsd only; fraction of `total_steps` spent decaying.
      final_lr: linear only; the learning rate reached at the last step
        (0 = anneal to zero; the paper's cooldowns end at 1e-6, §3.5).
    """
    if kind not in SCHEDULES:
        raise ValueError(f"make_schedule.kind={kind!r} is unknown; use one of {SCHEDULES}.")
    if total_steps <= 0:
        raise ValueError(f"make_schedule.total_steps must be positive, got {total_steps}.")
    return Schedule(kind, total_steps, peak, min(warmup_steps, total_steps), min_ratio, decay_fraction,
                    final_lr)


def decay_mask(params):
    """Weight decay on matrices only: norms' scales and biases (1-D) are exempt."""
    return jax.tree.map(lambda x: x.ndim >= 2, params)


@gin.configurable
def make_optimizer(
    schedule: optax.Schedule,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.1,
    clip_norm: float = 1.0,
) -> optax.GradientTransformation:
    """AdamW with global-norm clipping.

    Args:
      b1, b2, eps: Adam moments (0.95 for b2 is the usual LLM pre-training value).
      weight_decay: decoupled decay, applied to matrices only (see decay_mask).
      clip_norm: global gradient-norm clip; 0 disables clipping.
    """
    parts = []
    if clip_norm and clip_norm > 0:
        parts.append(optax.clip_by_global_norm(clip_norm))
    parts.append(
        optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask)
    )
    return optax.chain(*parts)
