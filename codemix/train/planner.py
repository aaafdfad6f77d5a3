"""Plan a run before paying for it: per-device memory, FLOPs, steps, wall time.

Memory per device under a mesh, from the config alone (shapes only: nothing
is compiled or allocated). The counts (arguments, temporaries, what XLA:CPU
does differently, the known misses and the accelerator estimate) are
`memory_model.py`'s; this module adds them up into a `Plan`.

`compiled_memory` compiles the real train step for abstract inputs and
returns XLA's `memory_analysis()`.

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
from codemix.train import partitioning
from codemix.train.memory_model import (  # noqa: F401  (public names, importable from here)
    BATCH_FEATURES_1D,
    BATCH_FEATURES_2D,
    CPU_NORM_SPLIT_TOKENS,
    CPU_SOFTMAX_SPLIT_SLICES,
    Buffer,
    attention_blocks,
    block_buffers,
    param_bytes_per_device,
    split_size,
)

GIB = 1024**3
BACKENDS = ("cpu", "tpu", "gpu")


def mesh_shape(num_devices: int = 1, **spec: int) -> dict:
    """{mesh axis: size} of a make_mesh spec (one size may be -1) over
    `num_devices`; `partitioning.mesh_sizes`, for devices this host lacks."""
    return partitioning.mesh_sizes(num_devices, **spec)


@dataclasses.dataclass(frozen=True)
class Plan:
    params_total: int
    mesh: dict
    devices: int
    global_batch: int
    seq_len: int
    rows_per_device: float
    backend: str
    param_bytes: int          # per device
    opt_bytes: int            # per device
    batch_bytes: int          # per device
    activation_bytes: int     # per device: every block's kept buffers, embedding, final norm
    logits_bytes: int         # per device: loss gradient (and head buffers) at the backward start
    weight_bytes: int         # per device: gathered FSDP weights / compute-dtype weight copies
    accum_bytes: int          # per device: gradient accumulator (grad_accum_steps > 1)
    grad_bytes: int           # per device: gradient buffers of the update
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
    def backward_bytes(self) -> int:
        """Temporaries at the start of the backward pass."""
        return self.activation_bytes + self.logits_bytes + self.weight_bytes + self.accum_bytes

    @property
    def update_bytes(self) -> int:
        """Temporaries while the optimizer update runs."""
        return self.grad_bytes + self.accum_bytes

    @property
    def temp_bytes(self) -> int:
        return max(self.backward_bytes, self.update_bytes)

    @property
    def peak_bytes(self) -> int:
        return self.argument_bytes + self.temp_bytes

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(argument_bytes=self.argument_bytes, state_bytes=self.state_bytes,
                   backward_bytes=self.backward_bytes,
                   update_bytes=self.update_bytes, temp_bytes=self.temp_bytes,
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
    backend: str = "tpu",
) -> Plan:
    """Memory per device, FLOPs and time of one run (see the module docstring).

    `backend` is the XLA backend whose behaviour the temporaries follow:
    "cpu" (measured) or "tpu"/"gpu" (the remat-honouring estimate).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}.")
    devices = math.prod(mesh.values())
    batch_shards = partitioning.shards_of(mesh, "batch")
    if global_batch % batch_shards:
        over = " x ".join(partitioning.mesh_axes_of("batch"))
        raise ValueError(
            f"global batch {global_batch} is not divisible by {over} = {batch_shards}; "
            f"change BATCH_SIZE or the mesh in the runtime gin."
        )
    rows = global_batch / batch_shards
    micro_rows = rows / grad_accum_steps
    tokens = micro_rows * seq_len
    param_local, _ = param_bytes_per_device(cfg, mesh)
    # The parameters as one device holds them after the FSDP all-gather.
    param_gathered, _ = param_bytes_per_device(cfg, partitioning.gathered(mesh))
    # FSDP: parameters split over the model width are all-gathered for use.
    fsdp = partitioning.shards_of(mesh, "embed") > 1
    opt = 2 * param_local + 2 * 4
    batch = int(rows * (BATCH_FEATURES_2D * seq_len + BATCH_FEATURES_1D) * 4)
    act = np.dtype(cfg.compute_dtype).itemsize
    storage = np.dtype(cfg.storage_dtype).itemsize
    d, vocab = cfg.d_model, split_size(cfg.vocab_size, partitioning.shards_of(mesh, "vocab"))

    buffers = block_buffers(cfg, micro_rows, seq_len, mesh, backend)
    if backend == "cpu":
        per_block = sum(b.elems * b.itemsize for b in buffers)
        norm_bufs = 4 if tokens >= CPU_NORM_SPLIT_TOKENS else 2
        edges = (2 + norm_bufs) * d * 4  # embedding lookup (gather + select), final norm
        activations = tokens * (cfg.num_layers * per_block + edges)
        logits = 2 * tokens * vocab * 4
        if act < 4:  # the bf16 logits, or the tied head's f32 gradient, at the peak
            logits += max(tokens * vocab * act, vocab * d * 4 if cfg.tie_embeddings else 0)
        weights = param_gathered * 4 // storage if (fsdp or act < 4) else 0
    else:
        kept = sum(b.elems * b.itemsize for b in buffers if cfg.remat in b.saved_by)
        working = 0 if cfg.remat == "none" else sum(b.elems * b.itemsize for b in buffers)
        edges = d * act + d * 4 + d * act  # embedding lookup, final norm (stats + output)
        activations = tokens * (cfg.num_layers * kept + working + edges)
        logits = 2 * tokens * vocab * 4 + (tokens * vocab * act if act < 4 else 0)
        cast = fsdp or act != storage
        weights = param_gathered * act // storage if cast else 0
    if not cfg.tie_embeddings and (backend != "cpu" or not fsdp):
        # The head's transposed copy and its gradient (XLA:CPU under FSDP keeps
        # only the gathered head, already counted in `weights`).
        logits += 2 * vocab * d * 4
    accum = 0
    if grad_accum_steps > 1:
        # The accumulator (zeros_like(params), sharded like them) and, under
        # FSDP, the blocks' gathered weights once more: XLA hoists their
        # all-gathers out of the microbatch loop and carries them through it.
        accum = param_local
        if fsdp:
            accum += param_bytes_per_device(cfg, partitioning.gathered(mesh), blocks_only=True)[0]
    grads = 2 * param_local  # gradients have the parameters' dtype and sharding

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
        global_batch=global_batch, seq_len=seq_len, rows_per_device=rows, backend=backend,
        param_bytes=param_local, opt_bytes=opt, batch_bytes=batch,
        activation_bytes=int(activations), logits_bytes=int(logits), weight_bytes=int(weights),
        accum_bytes=int(accum), grad_bytes=int(grads),
        flops_per_token=info.flops_per_token, flops_per_step=flops_step, steps=steps,
        tokens=None if steps is None else float(steps * tokens_per_step),
        step_time_s=step_time, wall_time_s=wall, peak_flops=peak_flops, mfu=mfu,
    )


def compiled_memory(cfg: ModelConfig, global_batch: int, seq_len: int, mesh_kwargs: dict,
                    grad_accum_steps: int = 1) -> dict:
    """XLA's memory analysis of the real train step (per device), compiled for
    abstract inputs on the local devices; nothing is allocated or run."""

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
        "platform": mesh.devices.flat[0].platform,
    }
