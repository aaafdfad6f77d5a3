"""Mesh construction and the one table from logical axes to mesh axes.

Parameters and batches name their axes logically ("embed", "mlp", "batch",
...). `LOGICAL_AXIS_RULES` says which mesh axis ("data", "fsdp", "tensor") each
logical axis is split over; everything else (params, optimizer state, batch)
derives its sharding from it. No other module names a mesh axis.
"""
from __future__ import annotations

import logging
import math
from typing import Sequence

import gin
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axis (or tuple of mesh axes, or None = replicated).
LOGICAL_AXIS_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),  # rows of a batch: data parallel x FSDP
    ("length", None),             # sequence positions stay whole
    ("vocab", "tensor"),          # embedding rows / logits columns
    ("embed", "fsdp"),            # model width: parameters sharded ZeRO-3 style
    ("mlp", "tensor"),            # FFN hidden units: Megatron-style split
    ("heads", "tensor"),          # query heads
    ("kv_heads", "tensor"),       # KV heads (replicated if too few to split)
    ("kv", None),                 # head dimension
    ("norm", None),               # norm scales and biases
)


@gin.configurable
def make_mesh(
    data: int = 1, fsdp: int = -1, tensor: int = 1, num_devices: int | None = None, devices=None
) -> Mesh:
    """A ("data", "fsdp", "tensor") mesh over all devices.

    Args:
      data: data-parallel replicas (devices). -1 means "all the rest".
      fsdp: parameter-sharding group size (devices). -1 (default) means "the rest".
      tensor: tensor-parallel group size (devices).
      num_devices: use only the first n devices (default: all); for tests and
        for comparing a sharded run with a single-device one.
    """
    devices = list(jax.devices() if devices is None else devices)
    if num_devices is not None:
        devices = devices[:num_devices]
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise ValueError(f"make_mesh: at most one of data/fsdp/tensor may be -1, got {sizes}.")
    fixed = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % fixed:
            raise ValueError(
                f"make_mesh: {len(devices)} devices can't be split as data={data}, "
                f"fsdp={fsdp}, tensor={tensor}; the fixed sizes multiply to {fixed}."
            )
        sizes[sizes.index(-1)] = len(devices) // fixed
    if math.prod(sizes) != len(devices):
        raise ValueError(
            f"make_mesh: data*fsdp*tensor = {math.prod(sizes)} but there are {len(devices)} "
            f"devices; set one of them to -1 in the runtime gin (e.g. make_mesh.fsdp = -1)."
        )
    # Auto axes: XLA's sharding propagation fills in activations' shardings
    # from the params' and batch's (the GSPMD model MaxText and T5X use).
    auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=auto, devices=devices)


def logical_to_spec(
    axes: Sequence[str | None], shape: Sequence[int] | None = None, mesh: Mesh | None = None,
    rules=LOGICAL_AXIS_RULES,
) -> P:
    """PartitionSpec for one array from its logical axis names.

    When `shape` and `mesh` are given, a mesh axis that does not divide the
    dimension (e.g. 3 KV heads over tensor=2) is dropped for that array, so it
    is replicated along that mesh axis instead of failing to compile.
    """
    table = dict(rules)
    used: set[str] = set()
    spec = []
    for i, name in enumerate(axes):
        if name is not None and name not in table:
            raise KeyError(
                f"logical axis {name!r} has no rule in LOGICAL_AXIS_RULES "
                f"(codemix/train/partitioning.py); add one."
            )
        target = table.get(name) if name is not None else None
        targets = () if target is None else ((target,) if isinstance(target, str) else tuple(target))
        targets = tuple(t for t in targets if t not in used)
        if shape is not None and mesh is not None and targets:
            size = math.prod(mesh.shape[t] for t in targets)
            if shape[i] % size:
                logging.debug("axis %s (dim %d) not divisible by %s", name, shape[i], targets)
                # Keep the first single mesh axis that divides, else replicate.
                targets = tuple(t for t in targets if shape[i] % mesh.shape[t] == 0)[:1]
        used.update(targets)
        spec.append(None if not targets else (targets[0] if len(targets) == 1 else targets))
    return P(*spec)


def tree_shardings(axes_tree, shapes_tree, mesh: Mesh):
    """NamedShardings for a pytree of arrays given a matching tree of axis tuples."""
    return jax.tree.map(
        lambda ax, x: NamedSharding(mesh, logical_to_spec(ax, x.shape, mesh)),
        axes_tree,
        shapes_tree,
        is_leaf=lambda t: isinstance(t, tuple),
    )


def _path_key(path) -> tuple:
    out = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                out.append(getattr(k, attr))
                break
        else:
            out.append(str(k))
    return tuple(out)


def opt_state_shardings(abstract_opt_state, params_shardings, abstract_params, mesh: Mesh):
    """Shardings for optimizer state: a leaf whose path ends with a parameter's
    path and has that parameter's shape (Adam's mu and nu) takes the
    parameter's sharding; everything else (step counts) is replicated."""
    by_path = {}
    for (path, sh), (_, x) in zip(
        jax.tree_util.tree_leaves_with_path(params_shardings),
        jax.tree_util.tree_leaves_with_path(abstract_params),
    ):
        by_path[_path_key(path)] = (sh, x.shape)
    replicated = NamedSharding(mesh, P())

    def pick(path, leaf):
        key = _path_key(path)
        for start in range(len(key)):
            hit = by_path.get(key[start:])
            if hit is not None and tuple(hit[1]) == tuple(np.shape(leaf)):
                return hit[0]
        return replicated

    return jax.tree_util.tree_map_with_path(pick, abstract_opt_state)


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Sharding of a batch array: rows over ("data", "fsdp"), the rest whole."""
    return NamedSharding(mesh, logical_to_spec(("batch",) + ("length",) * (ndim - 1)))
