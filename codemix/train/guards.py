"""Stop a run at the first non-finite loss or gradient, before it is saved.

Two checks, both cheap, so that a checkpoint never holds NaN/Inf weights:

- `stop_if_non_finite(metrics, first_step, checkpointer)`: the loss and
  gradient norm of every step fetched for a metrics line (the trainer
  device_gets them every `log_every` steps anyway), so the step reported is
  the exact first bad one;
- `state_is_finite(state)`: one jitted reduction over params and optimizer
  state, run by `Checkpointer.save` right before each save, so a save at a
  step between two log steps (checkpoint_every or a signal) never writes a
  non-finite state either.

Either way the run stops with `NonFiniteLoss`: in-flight writes of earlier
(good) checkpoints are finished and checksummed, no new checkpoint is written,
and a restart resumes from the last good one (after the cause is fixed: a
lower learning rate, a data problem, ...).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from codemix.errors import NonFiniteLoss


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def state_is_finite(tree) -> bool:
    """True when every floating-point array of `tree` is finite (one device reduction)."""
    return bool(_all_finite(tree))


def stop_if_non_finite(metrics: Sequence[dict], first_step: int, checkpointer=None) -> None:
    """Raise `NonFiniteLoss` at the first of `metrics` (host values of steps
    first_step, first_step + 1, ...) whose loss or grad_norm is not finite.
    Before raising, `checkpointer` is closed: earlier saves finish, nothing new is written."""
    for i, m in enumerate(metrics):
        bad = [k for k in ("loss", "grad_norm") if k in m and not math.isfinite(float(m[k]))]
        if not bad:
            continue
        step = first_step + i
        where = ""
        if checkpointer is not None:
            good = checkpointer.latest_step()
            checkpointer.close()
            where = (f" The last checkpoint, step {good}, is kept and no later one was written."
                     if good is not None else " No checkpoint had been written.")
        values = ", ".join(f"{k}={float(m[k])}" for k in bad)
        raise NonFiniteLoss(step, f"non-finite {values} at step {step}; the run is stopped.{where} "
                                  f"Lower the learning rate (or check the data of that step) and rerun.")
