"""Where the train state lives: abstract shapes and shardings, from one place.

`state_layout` derives, for a model config, an optimizer and a mesh, the
abstract params and optimizer state and the NamedShardings of the whole train
state {"step", "params", "opt_state"} and of a batch. The trainer, the
planner, benchmarks and tests all use it, so they shard identically.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from codemix import pytree
from codemix.data.features import ROW_FEATURES, VECTOR_FEATURES
from codemix.model import decoder
from codemix.model.config import ModelConfig
from codemix.train import partitioning


@dataclasses.dataclass(frozen=True)
class StateLayout:
    abstract_params: dict
    abstract_opt_state: object
    shardings: dict  # {"step", "params", "opt_state"}
    batch_shardings: dict  # feature -> NamedSharding
    row_sharding: NamedSharding
    mesh: Mesh

    def abstract_state(self) -> dict:
        return {"step": jax.ShapeDtypeStruct((), jnp.int32), "params": self.abstract_params,
                "opt_state": self.abstract_opt_state}

    def abstract_batch(self, global_batch: int, seq_len: int) -> dict:
        out = {k: jax.ShapeDtypeStruct((global_batch, seq_len),
                                       jnp.float32 if k == "decoder_loss_weights" else jnp.int32)
               for k in ROW_FEATURES}
        out.update({k: jax.ShapeDtypeStruct((global_batch,), jnp.int32) for k in VECTOR_FEATURES})
        return out


def state_layout(cfg: ModelConfig, optimizer: optax.GradientTransformation, mesh: Mesh) -> StateLayout:
    _, axes = decoder.graphdef_and_axes(cfg)
    abstract_params = decoder.abstract_params(cfg)
    param_sh = partitioning.tree_shardings(axes, abstract_params, mesh)
    abstract_opt = jax.eval_shape(optimizer.init, abstract_params)
    opt_sh = partitioning.opt_state_shardings(optimizer, abstract_opt, param_sh, mesh)
    row = partitioning.batch_sharding(mesh, 2)
    vec = partitioning.batch_sharding(mesh, 1)
    batch_sh = {**{k: row for k in ROW_FEATURES}, **{k: vec for k in VECTOR_FEATURES}}
    shardings = {"step": NamedSharding(mesh, P()), "params": param_sh, "opt_state": opt_sh}
    return StateLayout(abstract_params, abstract_opt, shardings, batch_sh, row, mesh)


def fresh_state(cfg: ModelConfig, optimizer: optax.GradientTransformation, layout: StateLayout,
                seed: int = 0, params: dict | None = None) -> dict:
    """Step 0 with new (or given) params and a fresh optimizer state, sharded."""
    sh = layout.shardings
    if params is None:
        if 0 <= seed < 2**32:
            params = _jitted_init(cfg, *pytree.hashable(sh["params"]))(np.uint32(seed))
        else:  # jax.random.key's own handling of negative or 64-bit seeds
            params = jax.jit(lambda: decoder.init_params(cfg, seed), out_shardings=sh["params"])()
    opt_state = jax.jit(optimizer.init, out_shardings=sh["opt_state"])(params)
    return {"step": jax.device_put(np.int32(0), sh["step"]), "params": params, "opt_state": opt_state}


@functools.lru_cache(maxsize=8)
def _jitted_init(cfg: ModelConfig, treedef, sharding_leaves: tuple):
    """One compiled initialiser per (config, shardings), the seed an input:
    the runs of an experiment in one process reuse it instead of tracing,
    lowering and loading a program each. jax.random.key(seed) is the key
    nnx.Rngs(seed) makes, so the weights are bit for bit those of
    decoder.init_params jitted with the seed a constant (the earlier path)."""
    out = jax.tree.unflatten(treedef, list(sharding_leaves))
    return jax.jit(lambda seed: decoder.init_params(cfg, jax.random.key(seed)), out_shardings=out)
