"""Plan a run before paying for it: per-device memory, FLOPs, steps, wall time.

Memory per device under a ("data", "fsdp", "tensor") mesh, from the config alone:

  parameters   sum over parameters of size x dtype bytes / (product of the mesh
               axes the parameter is split over). The split comes from
               `partitioning.logical_to_spec`, the same table the trainer uses,
               so a dimension a mesh axis does not divide is counted replicated.
  optimizer    AdamW's two moments have each parameter's shape, dtype and
               sharding (2 x parameters), plus two replicated int32 counts.
  batch        the step's input rows on this device (5 [rows, length] arrays
               and 2 [rows] arrays, 4 bytes each).
  activations  what the backward pass keeps per decoder block under the remat
               policy, per token on this device (b = rows per device, L =
               sequence length, d, f, n, k, h as in ModelConfig), counted at
               the granularity XLA keeps them (elementwise chains are fused):
                 none:          4d + 2(n+k)h + 3f   (compute dtype) + 3nL (f32:
                                attention logits, probabilities, their mask/max)
                 dots:          3d + 2(n+k)h + 2f   + nL
                 dots_no_batch: 3d + (n+2k)h + 2f
                 full:          d (the block input)
               plus the backward pass's working set for the block it is in
               (its recomputed activations, or for "none" the gradients of
               as many tensors): the "none" count once more.
               Heads and FFN units split over "tensor" divide their terms.
  logits       [b, L, V/tensor] float32, three buffers alive at the loss's
               backward (logits, softmax, their gradient).
  gradients    one parameter-sized buffer (sharded like the parameters), and
               under FSDP the all-gathered full weights of the blocks, which XLA
               keeps for the backward pass (parameter bytes x (1 - 1/fsdp)).

`compiled_memory` lowers and compiles the real train step for abstract inputs
and returns XLA's `memory_analysis()`; `tests/scale/test_planner.py` compares
the two. The argument/output/alias parts are exact bookkeeping and agree to a
fraction of a percent; the temporaries are an estimate (see the test and
launch/README.md for how close it is on CPU).

FLOPs per step use `codemix.model.info.flops_per_token` (6N + attention,
PaLM convention) x tokens per step; wall time = FLOPs / (devices x peak x MFU).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from codemix.model.config import ModelConfig
from codemix.model.info import model_info

BATCH_FEATURES_2D = 5  # input/target tokens, segment ids, positions, loss weights
BATCH_FEATURES_1D = 2  # source_id, epoch
GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class _MeshShape:
    """Stands in for a jax Mesh where only axis sizes matter (no devices needed)."""

    shape: dict

    @property
    def size(self) -> int:
        return math.prod(self.shape.values())


def mesh_shape(data: int = 1, fsdp: int = -1, tensor: int = 1, num_devices: int = 1) -> dict:
    """Resolve a make_mesh-style spec (one axis may be -1) for `num_devices`."""
    sizes = {"data": data, "fsdp": fsdp, "tensor": tensor}
    free = [k for k, v in sizes.items() if v == -1]
    if len(free) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {sizes}.")
    fixed = math.prod(v for v in sizes.values() if v != -1)
    if free:
        if num_devices % fixed:
            raise ValueError(f"{num_devices} devices can't be split as {sizes}.")
        sizes[free[0]] = num_devices // fixed
    if math.prod(sizes.values()) != num_devices:
        raise ValueError(f"mesh {sizes} has {math.prod(sizes.values())} devices, not {num_devices}.")
    return sizes


def _shard_factor(spec, mesh: dict) -> int:
    factor = 1
    for entry in spec:
        if entry is None:
            continue
        for axis in (entry,) if isinstance(entry, str) else entry:
            factor *= mesh[axis]
    return factor


def param_bytes_per_device(cfg: ModelConfig, mesh: dict) -> tuple[int, int]:
    """(bytes of this device's parameter shards, bytes of all parameters)."""
    import jax

    from codemix.model import decoder
    from codemix.train.partitioning import logical_to_spec

    _, axes = decoder.graphdef_and_axes(cfg)
    shapes = decoder.abstract_params(cfg)
    fake = _MeshShape(mesh)
    local = total = 0
    for ax, x in zip(jax.tree.leaves(axes, is_leaf=lambda t: isinstance(t, tuple)), jax.tree.leaves(shapes)):
        nbytes = int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
        total += nbytes
        local += nbytes // _shard_factor(logical_to_spec(ax, x.shape, fake), mesh)
    return local, total


def _div(n: int, by: int) -> float:
    """Split `n` over `by` devices if it divides (as logical_to_spec does), else keep it whole."""
    return n / by if by > 1 and n % by == 0 else float(n)


def activation_elems_per_token(cfg: ModelConfig, seq_len: int, tensor: int = 1) -> dict:
    """Elements per token per block kept for the backward pass: (compute dtype, f32)."""
    d, f, L = cfg.d_model, cfg.d_ff, seq_len
    n, k, h = _div(cfg.num_heads, tensor), _div(cfg.num_kv_heads, tensor), cfg.head_dim
    f = _div(f, tensor)
    ffn_branches = 2 if cfg.activation == "swiglu" else 1
    full = {"act": 4 * d + 2 * (n + k) * h + (ffn_branches + 1) * f, "f32": 3 * n * L}
    policy = {
        "none": full,
        "dots": {"act": 3 * d + 2 * (n + k) * h + ffn_branches * f, "f32": n * L},
        "dots_no_batch": {"act": 3 * d + (n + 2 * k) * h + ffn_branches * f, "f32": 0},
        "full": {"act": d, "f32": 0},
    }[cfg.remat]
    return {"saved": policy, "working": full}


@dataclasses.dataclass(frozen=True)
class Plan:
    params_total: int
    mesh: dict
    devices: int
    global_batch: int
    seq_len: int
    rows_per_device: float
    param_bytes: int          # per device
    opt_bytes: int            # per device
    batch_bytes: int          # per device
    activation_bytes: int     # per device
    logits_bytes: int         # per device
    grad_bytes: int           # per device (gradients + gathered FSDP weights)
    flops_per_token: float
    flops_per_step: float
    steps: int | None
    tokens: float | None
    step_time_s: float | None
    wall_time_s: float | None
    peak_flops: float | None
    mfu: float

    @property
    def argument_bytes(self) -> int:
        """What the jitted step takes as arguments: state + batch."""
        return self.param_bytes + self.opt_bytes + 4 + self.batch_bytes

    @property
    def state_bytes(self) -> int:
        return self.param_bytes + self.opt_bytes + 4

    @property
    def temp_bytes(self) -> int:
        return self.activation_bytes + self.logits_bytes + self.grad_bytes

    @property
    def peak_bytes(self) -> int:
        return self.argument_bytes + self.temp_bytes

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(argument_bytes=self.argument_bytes, temp_bytes=self.temp_bytes,
                   peak_bytes=self.peak_bytes)
        return out


def plan(
    cfg: ModelConfig,
    global_batch: int,
    seq_len: int,
    mesh: dict,
    grad_accum_steps: int = 1,
    token_budget: float | None = None,
    train_steps: int | None = None,
    peak_flops: float | None = None,
    mfu: float = 0.4,
) -> Plan:
    """Memory per device, FLOPs and time of one run (see the module docstring)."""
    devices = math.prod(mesh.values())
    batch_shards = mesh["data"] * mesh["fsdp"]
    if global_batch % batch_shards:
        raise ValueError(
            f"global batch {global_batch} is not divisible by data x fsdp = {batch_shards}; "
            f"change BATCH_SIZE or the mesh in the runtime gin."
        )
    rows = global_batch / batch_shards
    micro_rows = rows / grad_accum_steps
    param_local, param_total = param_bytes_per_device(cfg, mesh)
    opt = 2 * param_local + 2 * 4
    batch = int(rows * (BATCH_FEATURES_2D * seq_len + BATCH_FEATURES_1D) * 4)
    tokens = micro_rows * seq_len
    act_bytes = np.dtype(cfg.compute_dtype).itemsize
    per = activation_elems_per_token(cfg, seq_len, mesh["tensor"])

    def block_bytes(c):
        return c["act"] * act_bytes + c["f32"] * 4

    activations = tokens * cfg.num_layers * block_bytes(per["saved"])
    activations += tokens * block_bytes(per["working"])
    logits = 3 * tokens * _div(cfg.vocab_size, mesh["tensor"]) * 4
    gathered = (param_total - param_local) * act_bytes / np.dtype(cfg.storage_dtype).itemsize
    grads = param_local + (gathered if mesh["fsdp"] > 1 else 0)
    if grad_accum_steps > 1:
        grads += param_local  # the accumulator beside each microbatch's gradients
    info = model_info(cfg, seq_len)
    tokens_per_step = global_batch * seq_len
    flops_step = info.flops_per_token * tokens_per_step
    steps = None
    if train_steps is not None:
        steps = int(train_steps)
    elif token_budget is not None:
        steps = math.ceil(token_budget / tokens_per_step)
    step_time = wall = None
    if peak_flops:
        step_time = flops_step / (devices * peak_flops * mfu)
        wall = step_time * steps if steps is not None else None
    return Plan(
        params_total=info.total_params, mesh=dict(mesh), devices=devices,
        global_batch=global_batch, seq_len=seq_len, rows_per_device=rows,
        param_bytes=param_local, opt_bytes=opt, batch_bytes=batch,
        activation_bytes=int(activations), logits_bytes=int(logits), grad_bytes=int(grads),
        flops_per_token=info.flops_per_token, flops_per_step=flops_step, steps=steps,
        tokens=None if steps is None else float(steps * tokens_per_step),
        step_time_s=step_time, wall_time_s=wall, peak_flops=peak_flops, mfu=mfu,
    )


def compiled_memory(cfg: ModelConfig, global_batch: int, seq_len: int, mesh_kwargs: dict,
                    grad_accum_steps: int = 1) -> dict:
    """XLA's memory analysis of the real train step (per device), compiled for
    abstract inputs on the local devices; nothing is allocated or run."""

    from codemix.train import partitioning
    from codemix.train.optimizer import make_optimizer, make_schedule
    from codemix.train.state import state_layout
    from codemix.train.step import jit_train_step, make_train_step

    mesh = partitioning.make_mesh(**mesh_kwargs)
    schedule = make_schedule(total_steps=1000)
    optimizer = make_optimizer(schedule)
    layout = state_layout(cfg, optimizer, mesh)
    state_sh, batch_sh, row_sh = layout.shardings, layout.batch_shardings, layout.row_sharding
    batch = layout.abstract_batch(global_batch, seq_len)
    state = layout.abstract_state()
    step = make_train_step(cfg, optimizer, schedule, 1, grad_accum_steps, row_sh)
    compiled = jit_train_step(step, state_sh, batch_sh, mesh).lower(state, batch).compile()
    m = compiled.memory_analysis()
    return {
        "argument_bytes": int(m.argument_size_in_bytes),
        "output_bytes": int(m.output_size_in_bytes),
        "alias_bytes": int(m.alias_size_in_bytes),
        "temp_bytes": int(m.temp_size_in_bytes),
        "mesh": dict(mesh.shape),
    }
