"""Evaluation on the whole mesh: parameters sharded like training, rows split over hosts.

Placement. `eval_mesh()` builds the mesh with `partitioning.make_mesh`, so
the sizes bound by the run's gin (its runtime file) apply; sizes that do not
fit the devices here fall back to all devices on "fsdp". `param_shardings`
gives the parameters the training shardings (the one logical-axis table of
codemix/train/partitioning.py). On one device in one process the mesh is
None and everything stays as it was: single-device params, plain numpy
batches, no collectives.

Who is on the mesh. Scoring, generation and held-out perplexity find the mesh
from the parameters themselves (`mesh_of`): params on a NamedSharding of more
than one device (or in a multi-process run) switch them to the sharded path,
so the trainer's live params (the eval hook) and `codemix eval`'s loaded ones
need no extra argument.

Generation (codemix/model/decode.py, which may not import train/ or eval/)
takes these operations as a `decode.Placement`; `placement(params)` gives the
one that fits the params (`MeshPlacement` on a mesh).

Data parallel over hosts. Every process builds the same global batch (the
packing is deterministic), then `put_rows` hands JAX only this process's rows
(`jax.make_array_from_process_local_data`): rows are split over the mesh's
batch axes ("data" x "fsdp"), so each host feeds and computes its slice and
every process runs the same jitted calls with the same global shapes. Results
come back with `gather` (`process_allgather` when the array spans hosts), so
every process holds identical scores. Batches are padded up to a multiple of
the batch axes' size (`round_rows`) with rows that the callers mask out
(segment id 0, or filler prompts whose outputs are dropped), so padding is
never counted.
"""
from __future__ import annotations

import logging
import math

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from codemix.model import decode, decoder
from codemix.model.config import ModelConfig
from codemix.train import partitioning

log = logging.getLogger(__name__)


def eval_mesh() -> Mesh | None:
    """The evaluation mesh from the bound `make_mesh` sizes (the run's runtime
    gin when parsed), or None on a single device in a single process."""
    if jax.device_count() == 1:
        return None
    try:
        mesh = partitioning.make_mesh()
    except ValueError as e:  # the run's mesh was for another number of devices
        log.warning("the run's mesh does not fit %d devices (%s); evaluating with all of them "
                    "on fsdp", jax.device_count(), e)
        mesh = partitioning.make_mesh(data=1, fsdp=-1, tensor=1)
    if mesh.size == 1 and jax.process_count() == 1:
        return None
    log.info("evaluating on a %s mesh over %d processes",
             dict(zip(mesh.axis_names, mesh.devices.shape)), jax.process_count())
    return mesh


def param_shardings(cfg: ModelConfig, mesh: Mesh | None):
    """Shardings of the parameters: the training ones on `mesh`, else the first device."""
    abstract = decoder.abstract_params(cfg)
    if mesh is None:
        single = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        return jax.tree.map(lambda _: single, abstract)
    _, axes = decoder.graphdef_and_axes(cfg)
    return partitioning.tree_shardings(axes, abstract, mesh)


def place_params(cfg: ModelConfig, params: dict, mesh: Mesh | None) -> dict:
    """`params` (host or device arrays) moved to `param_shardings(cfg, mesh)`."""
    shardings = param_shardings(cfg, mesh)
    if mesh is None or jax.process_count() == 1:
        return jax.device_put(params, shardings)
    return jax.tree.map(lambda x, s: put_global(np.asarray(x), s), params, shardings)


def mesh_of(params) -> Mesh | None:
    """The mesh `params` live on, or None if they are on one device of one process."""
    leaves = jax.tree.leaves(params)
    sharding = getattr(leaves[0], "sharding", None) if leaves else None
    if not isinstance(sharding, NamedSharding):
        return None
    if sharding.mesh.size == 1 and jax.process_count() == 1:
        return None
    return sharding.mesh


def row_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Rows over the batch axes, the other dimensions whole (as in training)."""
    return partitioning.batch_sharding(mesh, ndim)


def row_multiple(mesh: Mesh | None) -> int:
    """How many pieces the batch axes cut a batch's rows into (1 without a mesh)."""
    if mesh is None:
        return 1
    spec = row_sharding(mesh, 1).spec[0]
    axes = () if spec is None else ((spec,) if isinstance(spec, str) else tuple(spec))
    return math.prod(mesh.shape[a] for a in axes)


def round_rows(rows: int, mesh: Mesh | None) -> int:
    """`rows` rounded up to a multiple of `row_multiple(mesh)`."""
    m = row_multiple(mesh)
    return max(m, -(-rows // m) * m)


def put_global(value: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from the same host value on every process: each process
    passes only the slices its own devices hold."""
    value = np.asarray(value)
    if jax.process_count() == 1:
        return jax.device_put(value, sharding)
    index_map = sharding.addressable_devices_indices_map(value.shape)
    if value.ndim == 0:
        return jax.make_array_from_process_local_data(sharding, value, value.shape)
    # The process's slices along each sharded dimension, in order, make up its
    # local data (see make_array_from_process_local_data).
    local = value
    for dim in range(value.ndim):
        spans = sorted({_span(idx[dim], value.shape[dim]) for idx in index_map.values()})
        if spans != [(0, value.shape[dim])]:
            local = np.concatenate([np.take(local, np.arange(a, b), axis=dim) for a, b in spans], axis=dim)
    return jax.make_array_from_process_local_data(sharding, local, value.shape)


def _span(s: slice, size: int) -> tuple[int, int]:
    start, stop, _ = s.indices(size)
    return start, stop


def put_rows(mesh: Mesh | None, arrays):
    """A batch (an array or a pytree of them, rows first) split over the mesh's
    batch axes; unchanged (host numpy) without a mesh. The number of rows must
    be a multiple of `row_multiple(mesh)`."""
    if mesh is None:
        return arrays

    def put(v):
        v = np.asarray(v)
        if v.shape[0] % row_multiple(mesh):
            raise ValueError(f"a batch of {v.shape[0]} rows does not split over {row_multiple(mesh)} "
                             f"row shards; pad it with round_rows first.")
        return put_global(v, row_sharding(mesh, v.ndim))

    return jax.tree.map(put, arrays)


def put_replicated(mesh: Mesh | None, value):
    """`value` (an array or a pytree of them, identical on every process) on
    every device of `mesh`; unchanged without a mesh."""
    if mesh is None:
        return value
    replicated = NamedSharding(mesh, P())
    return jax.tree.map(lambda v: put_global(np.asarray(v), replicated), value)


def gather(tree):
    """Host numpy copies of (possibly multi-host) arrays, identical on every process."""
    leaves = jax.tree.leaves(tree)
    if all(getattr(x, "is_fully_addressable", True) for x in leaves):
        return jax.tree.map(np.asarray, jax.device_get(tree))
    return multihost_utils.process_allgather(tree, tiled=True)


def init_cache(cfg: ModelConfig, mesh: Mesh | None, batch: int, max_len: int) -> list[dict]:
    """Empty KV caches (decoder.init_cache), sharded like activations on `mesh`:
    rows over the batch axes, KV heads over "tensor" where they divide."""
    if mesh is None:
        return decoder.init_cache(cfg, batch, max_len)
    kv_shape = (batch, max_len, cfg.num_kv_heads, cfg.head_dim)

    def sh(axes, shape):
        return NamedSharding(mesh, partitioning.logical_to_spec(axes, shape, mesh))

    layer = {"k": sh(("batch", "length", "kv_heads", "kv"), kv_shape),
             "v": sh(("batch", "length", "kv_heads", "kv"), kv_shape),
             "segment_ids": sh(("batch", "length"), (batch, max_len)),
             "index": NamedSharding(mesh, P())}
    out = [layer] * cfg.num_layers
    return jax.jit(lambda: decoder.init_cache(cfg, batch, max_len), out_shardings=out)()


class MeshPlacement(decode.Placement):
    """Generation's batches on `mesh`: rows split over the batch axes, results gathered."""

    def __init__(self, mesh: Mesh):
        self.mesh = mesh

    def round_rows(self, rows: int) -> int:
        return round_rows(rows, self.mesh)

    def rows(self, x):
        return put_rows(self.mesh, x)

    def replicated(self, x):
        return put_replicated(self.mesh, x)

    def gather(self, tree):
        return gather(tree)

    def init_cache(self, cfg: ModelConfig, batch: int, max_len: int) -> list[dict]:
        return init_cache(cfg, self.mesh, batch, max_len)


def placement(params) -> decode.Placement:
    """The placement generation needs for `params`: single device or their mesh."""
    mesh = mesh_of(params)
    return decode.Placement() if mesh is None else MeshPlacement(mesh)
