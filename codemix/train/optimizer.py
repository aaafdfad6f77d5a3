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

import gin
import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("cosine", "linear", "constant", "wsd")


@gin.configurable
def make_schedule(
    total_steps: int,
    kind: str = "cosine",
    peak: float = 3e-4,
    warmup_steps: int = 0,
    min_ratio: float = 0.1,
    decay_fraction: float = 0.2,
    final_lr: float = 0.0,
) -> optax.Schedule:
    """Learning-rate schedule.

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
    warmup_steps = min(warmup_steps, total_steps)
    rest = max(total_steps - warmup_steps, 1)

    def warm(step):
        if warmup_steps == 0:
            return jnp.float32(peak)
        return peak * jnp.minimum(step / warmup_steps, 1.0)

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        t = jnp.clip((step - warmup_steps) / rest, 0.0, 1.0)
        if kind == "cosine":
            after = peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + jnp.cos(jnp.pi * t)))
        elif kind == "linear":
            after = final_lr + (peak - final_lr) * (1.0 - t)
        elif kind == "constant":
            after = jnp.float32(peak)
        else:  # wsd
            decay_steps = max(int(round(total_steps * decay_fraction)), 1)
            start = total_steps - decay_steps
            d = jnp.clip((step - start) / decay_steps, 0.0, 1.0)
            after = peak * (1.0 - (1.0 - min_ratio) * d)
        return jnp.where(step < warmup_steps, warm(step), after)

    return schedule


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
