"""The loss and the jitted, sharded train step.

The train state is a plain dict {"step", "params", "opt_state"} so that jit
shardings, buffer donation and Orbax checkpoints all see one pytree.

Gradient accumulation splits the global batch into `accum_steps` microbatches
(row i goes to microbatch i mod accum_steps, so every microbatch is spread over
all data shards) and sums the *token-summed* loss gradients before dividing by
the batch's total target tokens: the update equals the one a single big batch
would give, whatever the split.

One compiled step for every stage. Whatever differs between the stages of one
model, batch and mesh is a runtime input, not a constant of the program: the
learning-rate schedule's numbers (`schedule_params`, see optimizer.Schedule),
and the per-source sums have `source_slots(n)` entries (the n sources first, the
rest zero), so mixtures of 2 to 8 sources give the same shapes. So init,
continue and cooldown runs share one program in the persistent compilation cache.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding

from codemix.model import decoder
from codemix.model.config import ModelConfig
from codemix.train.partitioning import logical_to_spec


def token_losses(cfg: ModelConfig, params, batch, constrain: decoder.Constrain | None = None):
    """Per-token cross-entropy (+ z-loss) [batch, length], and weights.
    `constrain`: the decoder's activation-sharding function (or None)."""
    logits, _ = decoder.apply(
        cfg,
        params,
        batch["decoder_input_tokens"],
        batch["decoder_segment_ids"],
        batch["decoder_positions"],
        constrain=constrain,
    )
    targets = batch["decoder_target_tokens"]
    log_z = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    ce = log_z - target_logit
    weights = batch["decoder_loss_weights"].astype(jnp.float32)
    total = ce
    if cfg.z_loss:
        total = ce + cfg.z_loss * jnp.square(log_z)
    return ce, total, weights


def _sums(cfg, params, batch, num_sources, constrain=None):
    """Token-summed objective, and per-source sums of loss and tokens."""
    ce, total, weights = token_losses(cfg, params, batch, constrain)
    objective = jnp.sum(total * weights)
    onehot = jax.nn.one_hot(batch["source_id"], num_sources, dtype=jnp.float32)  # [b, s]
    loss_by_source = jnp.einsum("bs,b->s", onehot, jnp.sum(ce * weights, axis=-1))
    tokens_by_source = jnp.einsum("bs,b->s", onehot, jnp.sum(weights, axis=-1))
    return objective, (loss_by_source, tokens_by_source)


def _constrain(mesh, x, logical_axes):
    """Shard an activation by its logical axes (the same table as parameters)."""
    spec = logical_to_spec(logical_axes, x.shape, mesh)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


class MeshConstrain:
    """The decoder's `constrain` on a mesh: shards activations by logical axes,
    and gives kernels that run under shard_map (splash attention) the mesh and
    the specs of the same table."""

    def __init__(self, mesh):
        self.mesh = mesh

    def __call__(self, x, logical_axes):
        return _constrain(self.mesh, x, logical_axes)

    def spec(self, logical_axes, shape):
        return logical_to_spec(logical_axes, shape, self.mesh)


def make_train_step(
    cfg: ModelConfig,
    optimizer: optax.GradientTransformation,
    schedule,
    num_sources: int,
    accum_steps: int = 1,
    batch_sharding: NamedSharding | None = None,
):
    """Returns step(state, batch, schedule_params=None) -> (state, metrics); not
    yet jitted. With a `batch_sharding`, the decoder's activations are
    constrained on its mesh. With `schedule_params` (the traced values of
    `schedule.params()`, a Schedule's), the optimizer's and the logged learning
    rate read the schedule's numbers from them (jit it with
    `jit_train_step(..., schedule_params=True)`); without, they are constants."""
    constrain = None if batch_sharding is None else MeshConstrain(batch_sharding.mesh)
    grad_fn = jax.value_and_grad(functools.partial(_sums, cfg, constrain=constrain), has_aux=True)

    def microbatches(batch):
        def split(x):
            b = x.shape[0]
            if b % accum_steps:
                raise ValueError(
                    f"batch of {b} rows can't be split into {accum_steps} microbatches; "
                    f"make the batch size a multiple of grad_accum_steps."
                )
            y = x.reshape((b // accum_steps, accum_steps) + x.shape[1:])
            y = jnp.swapaxes(y, 0, 1)
            if batch_sharding is not None:
                spec = batch_sharding.spec
                y = jax.lax.with_sharding_constraint(
                    y, NamedSharding(batch_sharding.mesh, jax.sharding.PartitionSpec(None, *spec[:1]))
                )
            return y

        return jax.tree.map(split, batch)

    def step(state, batch, schedule_params=None):
        if schedule_params is None:
            return body(state, batch)
        if not hasattr(schedule, "reading"):
            raise TypeError(f"schedule_params given, but the schedule {schedule!r} can't read them; "
                            f"make it with optimizer.make_schedule or call step(state, batch).")
        with schedule.reading(schedule_params):
            return body(state, batch)

    def body(state, batch):
        params = state["params"]
        repeated = jnp.zeros((num_sources,), jnp.float32)
        if "epoch" in batch:  # rows from a second or later pass over their source
            repeated = jnp.einsum(
                "bs,b->s",
                jax.nn.one_hot(batch["source_id"], num_sources, dtype=jnp.float32),
                (batch["epoch"] > 0).astype(jnp.float32),
            )
        batch = {k: v for k, v in batch.items() if k != "epoch"}
        if accum_steps == 1:
            (objective, (loss_s, tok_s)), grads = grad_fn(params, batch, num_sources)
        else:
            def body(carry, mb):
                g_acc, obj_acc, l_acc, t_acc = carry
                (obj, (l, t)), g = grad_fn(params, mb, num_sources)
                g_acc = jax.tree.map(jnp.add, g_acc, g)
                return (g_acc, obj_acc + obj, l_acc + l, t_acc + t), None

            zeros = jax.tree.map(jnp.zeros_like, params)
            init = (zeros, jnp.float32(0), jnp.zeros(num_sources), jnp.zeros(num_sources))
            (grads, objective, loss_s, tok_s), _ = jax.lax.scan(body, init, microbatches(batch))
        n_tokens = jnp.maximum(jnp.sum(tok_s), 1.0)
        grads = jax.tree.map(lambda g: g / n_tokens, grads)
        grad_norm = optax.global_norm(grads)
        updates, opt_state = optimizer.update(grads, state["opt_state"], params)
        params = optax.apply_updates(params, updates)
        new_state = {"step": state["step"] + 1, "params": params, "opt_state": opt_state}
        metrics = {
            "loss": jnp.sum(loss_s) / n_tokens,
            "objective": objective / n_tokens,
            "loss_sum_by_source": loss_s,
            "tokens_by_source": tok_s,
            "repeated_rows_by_source": repeated,
            "grad_norm": grad_norm,
            "lr": schedule(state["step"]),
        }
        return new_state, metrics

    return step


def jit_train_step(step_fn, state_shardings, batch_shardings, mesh, schedule_params: bool = False):
    """jit with explicit in/out shardings; the old state's buffers are donated.
    With `schedule_params`, the step takes them (replicated) as a third argument."""
    replicated = NamedSharding(mesh, jax.sharding.PartitionSpec())
    extra = (replicated,) if schedule_params else ()
    return jax.jit(
        step_fn,
        in_shardings=(state_shardings, batch_shardings) + extra,
        out_shardings=(state_shardings, replicated),
        donate_argnums=(0,),
    )


def source_slots(num_sources: int) -> int:
    """Entries of the step's per-source sums: 2 or more sources are rounded up to
    a multiple of 8 (the spare entries stay zero; StepMetrics reads the first n),
    which leaves every sum's bits as they were. One source keeps one entry: XLA
    sums a single column another way, so padding it would move its loss by an ulp."""
    return 1 if num_sources == 1 else -(-num_sources // 8) * 8


def with_schedule(jitted, schedule, mesh):
    """step(state, batch) that passes `schedule.params()` (replicated arrays, made
    once, the same on every process) to a step jitted with schedule_params=True."""
    replicated = NamedSharding(mesh, jax.sharding.PartitionSpec())
    params = {k: jax.make_array_from_callback((), replicated, lambda _, v=v: np.asarray(v))
              for k, v in schedule.params().items()}

    def step(state, batch):
        return jitted(state, batch, params)

    return step
