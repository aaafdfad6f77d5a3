"""The codemix decoder (Flax NNX) and its functional interface.

Training code works with plain pytrees: `params` is a nested dict of arrays (the
NNX state as a pure dict) and `axes` mirrors it with tuples of logical axis
names. `apply` rebuilds the module from a graph definition and runs it, so the
train step stays a pure function that `jax.jit` can shard.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from codemix.model import layer_stack
from codemix.model.config import REMAT_NAMES, ModelConfig
from codemix.model.layers import Block, Norm
from codemix.pytree import nest, path_str

# Activation sharding. The decoder names the logical axes of its activations
# (RESIDUAL_AXES for the residual stream, LOGITS_AXES for logits); a caller
# that knows the mesh (the train step) passes `constrain`, a function
# (array, logical axes) -> array that applies the sharding constraint. Without
# one (eval, decoding, single device) nothing is constrained. Without
# constraints XLA would take the activations' sharding from the FSDP-split
# embedding table (model width over devices) and gather the whole global
# batch on every device.
RESIDUAL_AXES = ("batch", "length", None)
LOGITS_AXES = ("batch", "length", "vocab")
Constrain = Callable[[jax.Array, tuple], jax.Array]


def _unconstrained(x, logical_axes):
    return x

_REMAT = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    **{name: jax.checkpoint_policies.save_only_these_names(*saved) for name, saved in REMAT_NAMES.items()},
}


class Decoder(nnx.Module):
    """Token embedding, `num_layers` blocks, final norm, output projection."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = nnx.Param(
            jax.nn.initializers.normal(cfg.init_std)(
                rngs.params(), (cfg.vocab_size, cfg.d_model), cfg.storage_dtype
            ),
            axes=("vocab", "embed"),
        )
        if cfg.scan_layers:
            # One Block whose every parameter has a leading layer axis (layer_stack.STACKED).
            @nnx.split_rngs(splits=cfg.num_layers)
            @nnx.vmap(in_axes=(0,), out_axes=0)
            def stacked(r):
                return Block(cfg, r)

            self.blocks = stacked(rngs)
        else:
            self.layers = nnx.List([Block(cfg, rngs) for _ in range(cfg.num_layers)])
        self.final_norm = Norm(cfg)
        if not cfg.tie_embeddings:
            self.lm_head = nnx.Param(
                jax.nn.initializers.normal(cfg.init_std)(
                    rngs.params(), (cfg.d_model, cfg.vocab_size), cfg.storage_dtype
                ),
                axes=("embed", "vocab"),
            )

    def __call__(self, tokens, segment_ids=None, positions=None, caches=None, branch_ids=None,
                 output: str = "logits", constrain: Constrain | None = None):
        """tokens, segment_ids, positions: [batch, length] int32.

        Without segment ids the row is one document; without positions they
        count from 0 within each segment's first slot (plain rows: 0..L-1).
        `branch_ids` (optional, [batch, length]) share a context between
        continuations, see `layers.attention_mask`.
        Returns (logits [batch, length, vocab] float32, new caches or None);
        with output="hidden", the final-normed hidden states [batch, length,
        d_model] instead of logits (project them with `project`).
        `constrain`: the activation-sharding function (see RESIDUAL_AXES);
        None leaves activations unconstrained. A `constrain` with `.mesh` and
        `.spec(logical_axes, shape)` also lets splash attention run per shard.
        """
        cfg = self.cfg
        constrain = constrain or _unconstrained
        if segment_ids is None:
            segment_ids = jnp.ones_like(tokens)
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        x = jnp.take(self.embed[...], tokens, axis=0).astype(cfg.compute_dtype)
        x = constrain(x, RESIDUAL_AXES)
        if cfg.scan_layers and caches is None:
            x = self._scan_blocks(x, segment_ids, positions, branch_ids, constrain)
            new_caches = None
        else:
            def run(block, x, segment_ids, positions, cache, branch_ids):
                return block(x, segment_ids, positions, cache, branch_ids, constrain)

            if cfg.remat != "none" and caches is None:
                run = nnx.remat(run, policy=_REMAT[cfg.remat])
            new_caches = [] if caches is not None else None
            for i, block in enumerate(self._blocks()):
                cache = None if caches is None else caches[i]
                x, new_cache = run(block, x, segment_ids, positions, cache, branch_ids)
                x = constrain(x, RESIDUAL_AXES)
                if caches is not None:
                    new_caches.append(new_cache)
        x = self.final_norm(x)
        if output == "hidden":
            return x, new_caches
        return self.project(x, constrain), new_caches

    def _blocks(self):
        """The blocks one by one (a scanned model's are sliced out of the stack:
        the KV-cache decode path runs them in a Python loop)."""
        if not self.cfg.scan_layers:
            return list(self.layers)
        graphdef, state = nnx.split(self.blocks)
        return [nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], state))
                for i in range(self.cfg.num_layers)]

    def _scan_blocks(self, x, segment_ids, positions, branch_ids, constrain):
        """All blocks as one `jax.lax.scan` over the stacked parameters, the
        remat policy applied to the scanned body (one block), as MaxText's
        scan_layers does."""
        graphdef, state = nnx.split(self.blocks)

        def layer(h, layer_state):
            block = nnx.merge(graphdef, layer_state)
            out, _ = block(h, segment_ids, positions, None, branch_ids, constrain)
            return constrain(out, RESIDUAL_AXES)

        if self.cfg.remat != "none":
            layer = jax.checkpoint(layer, policy=_REMAT[self.cfg.remat], prevent_cse=False)
        x, _ = jax.lax.scan(lambda h, st: (layer(h, st), None), x, state)
        return x

    def project(self, x, constrain: Constrain | None = None):
        """Final-normed hidden states [..., d_model] -> float32 logits [..., vocab]."""
        cfg = self.cfg
        constrain = constrain or _unconstrained
        if cfg.tie_embeddings:
            logits = jnp.einsum("...d,vd->...v", x, self.embed[...].astype(cfg.compute_dtype))
        else:
            logits = x @ self.lm_head[...].astype(cfg.compute_dtype)
        if logits.ndim == 3:
            logits = constrain(logits, LOGITS_AXES)
        return logits.astype(jnp.float32)


def init_cache(cfg: ModelConfig, batch: int, max_len: int, dtype=None) -> list[dict]:
    """Empty KV caches, one per layer, for `max_len` slots."""
    dtype = dtype or cfg.compute_dtype
    shape = (batch, max_len, cfg.num_kv_heads, cfg.head_dim)
    return [
        {
            "k": jnp.zeros(shape, dtype),
            "v": jnp.zeros(shape, dtype),
            "segment_ids": jnp.zeros((batch, max_len), jnp.int32),
            "index": jnp.zeros((), jnp.int32),
        }
        for _ in range(cfg.num_layers)
    ]


def _axes_of(state) -> dict:
    """Pure dict of logical axis tuples, mirroring `nnx.to_pure_dict(state)`."""
    items = []
    for path, var in state.flat_state():
        axes = var.get_metadata().get("axes")
        if axes is None:
            raise ValueError(f"parameter {path_str(path)} has no logical axes")
        if path[0] == layer_stack.STACKED:
            axes = (None,) + tuple(axes)  # the layer axis of stacked blocks stays whole
        items.append((path, tuple(axes)))
    return nest(items)


def graphdef_and_axes(cfg: ModelConfig):
    """The static graph definition and the logical axes of every parameter,
    computed abstractly (no parameter memory is allocated)."""
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Decoder(cfg, nnx.Rngs(0))))
    return graphdef, _axes_of(abstract)


def abstract_params(cfg: ModelConfig) -> dict:
    """ShapeDtypeStructs of the parameters, as a pure dict."""
    _, abstract = nnx.split(nnx.eval_shape(lambda: Decoder(cfg, nnx.Rngs(0))))
    return nnx.to_pure_dict(abstract)


def init_params(cfg: ModelConfig, seed: int = 0) -> dict:
    """Freshly initialised parameters (a pure dict of arrays)."""
    _, state = nnx.split(Decoder(cfg, nnx.Rngs(seed)))
    return nnx.to_pure_dict(state)


@functools.lru_cache(maxsize=16)
def _graphdef(cfg: ModelConfig):
    return graphdef_and_axes(cfg)[0]


def apply(cfg: ModelConfig, params: dict, tokens, segment_ids=None, positions=None, caches=None,
          branch_ids=None, output: str = "logits", constrain: Constrain | None = None):
    """Run the decoder on a pure-dict of params. Returns (logits, caches)
    (or (hidden, caches) with output="hidden"; see `Decoder.__call__`,
    which also says what `constrain` does)."""
    model = nnx.merge(_graphdef(cfg), params)
    return model(tokens, segment_ids, positions, caches, branch_ids, output, constrain)


def project(cfg: ModelConfig, params: dict, hidden, constrain: Constrain | None = None):
    """Logits (float32) of final-normed hidden states from `apply(output="hidden")`."""
    return nnx.merge(_graphdef(cfg), params).project(hidden, constrain)


def param_count(params_or_abstract: dict) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params_or_abstract)))
