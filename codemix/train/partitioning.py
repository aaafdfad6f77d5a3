"""Mesh construction and the one table from logical axes to mesh axes.

Parameters and batches name their axes logically ("embed", "mlp", "batch",
...). `logical_axis_rules()` (gin-configurable; default `LOGICAL_AXIS_RULES`)
says which mesh axis ("data", "fsdp", "tensor") each logical axis is split
over; everything else (params, optimizer state, batch, activations, the
planner's memory counts) derives its sharding from it. No other module names a
mesh axis, and `mesh_sizes` is the one place a mesh spec is resolved.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import gin
import jax
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

log = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")

Rule = tuple[str, "str | tuple[str, ...] | None"]

# The default table: logical axis -> mesh axis (or tuple of mesh axes, or
# None = replicated). A runtime gin may replace it with
# `logical_axis_rules.rules = ((...), ...)` (MaxText's `logical_axis_rules`).
LOGICAL_AXIS_RULES: tuple[Rule, ...] = (
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
def logical_axis_rules(rules: Sequence[Sequence] = LOGICAL_AXIS_RULES) -> tuple[Rule, ...]:
    """The table from logical axes to mesh axes that every sharding uses.

    Args:
      rules: (logical axis, mesh axis | tuple of mesh axes | None) pairs, one
        per logical axis; None replicates. Default: `LOGICAL_AXIS_RULES`
        (FSDP over "embed", tensor parallelism over heads/mlp/vocab, batch
        over data x fsdp). Gin lists are accepted for the tuples.
    """
    out, seen = [], set()
    for rule in rules:
        if len(rule) != 2 or not isinstance(rule[0], str):
            raise ValueError(
                f"logical_axis_rules.rules: {rule!r} is not a (logical axis, mesh axes) pair; "
                f"write e.g. ('embed', 'fsdp') or ('batch', ('data', 'fsdp'))."
            )
        name, target = rule
        targets = () if target is None else ((target,) if isinstance(target, str) else tuple(target))
        bad = [t for t in targets if t not in MESH_AXES]
        if bad:
            raise ValueError(
                f"logical_axis_rules.rules: logical axis {name!r} maps to {bad}, not a mesh axis; "
                f"use one of {MESH_AXES} or None."
            )
        if name in seen:
            raise ValueError(f"logical_axis_rules.rules: logical axis {name!r} has two rules; keep one.")
        seen.add(name)
        out.append((name, None if not targets else (targets[0] if isinstance(target, str) else targets)))
    return tuple(out)


def mesh_sizes(num_devices: int, data: int = 1, fsdp: int = -1, tensor: int = 1) -> dict[str, int]:
    """{mesh axis: size} for a make_mesh spec over `num_devices` (one size may
    be -1, "all the rest"); shapes only, so the planner can size a mesh of
    devices it does not have."""
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise ValueError(f"make_mesh: at most one of data/fsdp/tensor may be -1, got {sizes}.")
    fixed = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if num_devices % fixed:
            raise ValueError(
                f"make_mesh: {num_devices} devices can't be split as data={data}, "
                f"fsdp={fsdp}, tensor={tensor}; the fixed sizes multiply to {fixed}."
            )
        sizes[sizes.index(-1)] = num_devices // fixed
    if math.prod(sizes) != num_devices:
        raise ValueError(
            f"make_mesh: data*fsdp*tensor = {math.prod(sizes)} but there are {num_devices} "
            f"devices; set one of them to -1 in the runtime gin (e.g. make_mesh.fsdp = -1)."
        )
    return dict(zip(MESH_AXES, sizes))


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
    sizes = mesh_sizes(len(devices), data=data, fsdp=fsdp, tensor=tensor)
    # Auto axes: XLA's sharding propagation fills in activations' shardings
    # from the params' and batch's (the GSPMD model MaxText and T5X use).
    auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    return jax.make_mesh(tuple(sizes.values()), MESH_AXES, axis_types=auto, devices=devices)


def mesh_axes_of(logical_axis: str, rules=None) -> tuple[str, ...]:
    """The mesh axes one logical axis is split over (before any divisibility
    fallback); () when it is replicated."""
    table = dict(logical_axis_rules() if rules is None else rules)
    if logical_axis not in table:
        raise KeyError(
            f"logical axis {logical_axis!r} has no rule in logical_axis_rules "
            f"(codemix/train/partitioning.py, or logical_axis_rules.rules in the gin); add one."
        )
    target = table[logical_axis]
    return () if target is None else ((target,) if isinstance(target, str) else tuple(target))


def shards_of(sizes: dict[str, int], logical_axis: str, rules=None) -> int:
    """How many ways `logical_axis` is split on a mesh of these sizes."""
    return math.prod(sizes[a] for a in mesh_axes_of(logical_axis, rules))


def gathered(sizes: dict[str, int], logical_axis: str = "embed", rules=None) -> dict[str, int]:
    """The mesh sizes with the axes of `logical_axis` set to 1: the layout a
    device sees after all-gathering parameters over them (FSDP, by default)."""
    axes = mesh_axes_of(logical_axis, rules)
    return {a: 1 if a in axes else n for a, n in sizes.items()}


def logical_to_spec(
    axes: Sequence[str | None], shape: Sequence[int] | None = None, mesh: Mesh | None = None,
    rules=None,
) -> P:
    """PartitionSpec for one array from its logical axis names.

    When `shape` and `mesh` are given, a mesh axis that does not divide the
    dimension (e.g. 3 KV heads over tensor=2) is dropped for that array, so it
    is replicated along that mesh axis instead of failing to compile.
    `rules` defaults to `logical_axis_rules()` (the gin-bound table).
    """
    rules = logical_axis_rules() if rules is None else rules
    used: set[str] = set()
    spec = []
    for i, name in enumerate(axes):
        targets = () if name is None else mesh_axes_of(name, rules)
        targets = tuple(t for t in targets if t not in used)
        if shape is not None and mesh is not None and targets:
            size = math.prod(mesh.shape[t] for t in targets)
            if shape[i] % size:
                log.debug("axis %s (dim %d) not divisible by %s", name, shape[i], targets)
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


def opt_state_shardings(optimizer: optax.GradientTransformation, abstract_opt_state,
                        params_shardings, mesh: Mesh):
    """Shardings for optimizer state: every copy of the parameter tree inside
    it (Adam's mu and nu) takes the parameters' shardings, found by
    `optax.tree_map_params` from the optimizer's own `init`; everything else
    (step counts) is replicated."""
    replicated = NamedSharding(mesh, P())
    return optax.tree_map_params(
        optimizer, lambda _, sharding: sharding, abstract_opt_state, params_shardings,
        transform_non_params=lambda _: replicated,
    )


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Sharding of a batch array: rows split as the "batch" rule says, the rest whole."""
    return NamedSharding(mesh, logical_to_spec(("batch",) + ("length",) * (ndim - 1)))
