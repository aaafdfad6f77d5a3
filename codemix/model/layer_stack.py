"""Per-layer and stacked decoder parameters, and the one conversion between them.

An unrolled decoder (`ModelConfig.scan_layers = False`) keeps its blocks as
`params["layers"][i]`, one subtree per block; a scanned one keeps a single
subtree `params["blocks"]` whose arrays have a leading axis of `num_layers`
(what `jax.lax.scan` walks). Everything that reads or writes parameters in
another layout (checkpoints from the other kind of run, HF/GGUF import and
export) converts here, with `to_layout`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

PER_LAYER = "layers"
STACKED = "blocks"


def is_stacked(params: dict) -> bool:
    return STACKED in params


def _stack(leaves):
    first = leaves[0]
    if isinstance(first, NamedSharding):  # shardings: the layer axis stays whole
        return NamedSharding(first.mesh, P(None, *first.spec))
    if isinstance(first, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct((len(leaves),) + tuple(first.shape), first.dtype)
    return jnp.stack(leaves) if isinstance(first, jax.Array) else np.stack(leaves)


def stack(params: dict) -> dict:
    """params["layers"][0..L-1] -> params["blocks"] with a leading layer axis."""
    if is_stacked(params):
        return params
    layers = params[PER_LAYER]
    keys = sorted(layers, key=int)
    out = {k: v for k, v in params.items() if k != PER_LAYER}
    out[STACKED] = jax.tree.map(lambda *xs: _stack(xs), *[layers[k] for k in keys])
    return out


def unstack(params: dict, num_layers: int | None = None) -> dict:
    """params["blocks"] (leading layer axis) -> params["layers"][0..L-1].
    `num_layers` is needed only for a tree of shardings (they have no shape)."""
    if not is_stacked(params):
        return params
    blocks = params[STACKED]
    depth = num_layers if num_layers is not None else jax.tree.leaves(blocks)[0].shape[0]

    def take(x, i):
        if isinstance(x, NamedSharding):
            return NamedSharding(x.mesh, P(*x.spec[1:]))
        if isinstance(x, jax.ShapeDtypeStruct):
            return jax.ShapeDtypeStruct(tuple(x.shape[1:]), x.dtype)
        return x[i]

    out = {k: v for k, v in params.items() if k != STACKED}
    out[PER_LAYER] = {i: jax.tree.map(lambda x, i=i: take(x, i), blocks) for i in range(depth)}
    return out


def to_layout(params: dict, stacked: bool, num_layers: int | None = None) -> dict:
    """The same parameters (arrays, ShapeDtypeStructs or NamedShardings) in the
    layout a model with `scan_layers=stacked` uses."""
    return stack(params) if stacked else unstack(params, num_layers)
