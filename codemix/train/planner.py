"""Plan a run before paying for it: per-device memory, FLOPs, steps, wall time.

Memory per device under a ("data", "fsdp", "tensor") mesh, from the config
alone (shapes only: nothing is compiled or allocated). Notation: b = rows per device per
microbatch, L = sequence length, T = b x L tokens per device, d, f, n, k, h, V
as in ModelConfig with n, k, f and V divided by the tensor axis where it
divides them (as `logical_to_spec` splits them); the training attention cuts a
row into C query blocks of B tokens (B = L and C = 1 when the row is one block).

Arguments (exact bookkeeping; equal to XLA's argument/alias/output sizes):

  parameters   each parameter's bytes / (product of the mesh axes it is split
               over), from `partitioning.logical_to_spec`, the table the
               trainer uses.
  optimizer    AdamW's two moments (2 x parameters) and two int32 counts.
  batch        the step's input rows on this device (5 [rows, L] and 2 [rows]
               arrays, 4 bytes each).

Temporaries: the larger of two moments of the step.

  backward start  (usually the peak) every buffer the forward pass left for
      the backward pass, plus the loss gradient:
    activations   per token and block, the tensors XLA keeps:
        norms       2 per norm (the normalized f32 input, the output)
        residuals   2d (after attention, block output)
        attention   q nh, the attention output nh, the K/V prefix each query
                    block reads k h (C + 1), and the f32 score buffers, s x n x
                    B (C + 1) / 2 (block i scores i x B keys, so the C blocks
                    hold n B^2 C (C + 1) / 2 scores per row)
        MLP         SwiGLU 5f (up, gate, sigmoid, silu, product), GELU 3f
      plus the embedding lookup (2d) and the final norm (2d) once.
    logits        the loss gradient [T, V] and its transpose, f32; an untied
                  head adds its transposed copy and its gradient (on one
                  device; under FSDP only its gathered copy, in `weights`).
    weights       under FSDP every all-gathered weight (the parameter bytes
                  split over "tensor" only): XLA keeps the forward pass's
                  gathered copies for the backward pass.
  update          the gradients, twice (the summed gradients and their
                  per-token mean that clipping and AdamW read), split like
                  the parameters.
  Gradient accumulation adds the accumulator (sharded like the parameters)
  and, under FSDP, the blocks' gathered weights once more (XLA hoists their
  all-gathers out of the microbatch loop and carries them through it; measured
  on tiny and small, within 5%).

The counts above are what XLA:CPU does (`backend="cpu"`), read from its buffer
assignment and checked against `compiled.memory_analysis()` over a grid of
models, lengths, batches, dtypes, remat policies and meshes
(benchmarks/planner_accuracy.py; tests/scale/test_planner.py asserts a
representative set within 10%). XLA:CPU specifics in them:

  * Remat saves nothing: XLA:CPU schedules each block's recomputation before
    the backward pass starts (it depends only on the saved block input), so
    every policy keeps ~the "none" buffers. The one difference is the SwiGLU
    sigmoid, which f32 remat recomputes inside its consumer (4f, not 5f).
  * bfloat16 arithmetic is widened to f32: activations stay f32 except four
    SwiGLU (two GELU) buffers, each weight gets an f32 copy of its rounded
    value (the parameter bytes again), and the bf16 logits or the tied head's
    f32 gradient (whichever is larger) is live at the peak.
  * Size-dependent fusion: with T >= 4096 tokens per device each norm also
    materializes its rsqrt broadcast and product (4 buffers, not 2); on one
    device with b x n >= 32 the softmax output is kept apart from its masked
    copy (s = 3 score buffers per query block, else 2). Both thresholds are
    measured bounds (T = 3584 and b x n = 28 fuse), not XLA constants.
  * Heap fragmentation in XLA's temp allocation adds up to ~7% in a few
    cases (the buffers' sum is exact, the packed arena is larger).

Known misses (benchmarks/planner_accuracy.py lists every case):

  * (Fixed) Before the train step constrained the decoder's activations to
    the batch sharding (layers.activation_sharding), XLA's propagation split
    the residual stream over "embed" and kept the whole global batch's logits
    on every device (compiled temporaries 1.2-3.7x the count). With the
    constraint, 55 of 57 sharded runs agree within 10%.
  * f32 remat with a tensor axis: XLA:CPU runs some MLP recomputation after
    the tensor-parallel collectives instead of hoisting it, and keeps fewer
    MLP buffers than counted (up to 16% over).

`backend="tpu"` / `"gpu"` (what `codemix plan --accelerator/--gpu` uses)
keeps the same tensors at their native dtypes (compute dtype for
activations, f32 for norm statistics, scores and softmax) without the CPU
copies and thresholds, and honours the remat policy: "none" keeps everything,
"dots" the block input and every matmul output, "dots_no_batch" the block
input and the projections, "full" the block input; remat adds one block's
whole working set (its recomputation). Gathered FSDP weights are counted in
the compute dtype. None of that can be compiled here: it assumes the
accelerator's scheduler runs each block's recomputation next to its backward
pass (as TPU's memory-aware scheduler is expected to; XLA:GPU's
latency-hiding scheduler has been reported to hoist it as XLA:CPU does,
jax-ml/jax#20763), and that gradient accumulation, FSDP weights and the
loss behave as on CPU. Treat it as an estimate and confirm with
`codemix plan ... --compile` on one host of the slice.

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

BATCH_FEATURES_2D = 5  # input/target tokens, segment ids, positions, loss weights
BATCH_FEATURES_1D = 2  # source_id, epoch
GIB = 1024**3
BACKENDS = ("cpu", "tpu", "gpu")

# XLA:CPU fusion thresholds, measured (see the module docstring).
CPU_NORM_SPLIT_TOKENS = 4096   # tokens per device from which a norm keeps 4 buffers
CPU_SOFTMAX_SPLIT_SLICES = 32  # rows x heads from which the softmax output is kept apart


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


def param_bytes_per_device(cfg: ModelConfig, mesh: dict, blocks_only: bool = False) -> tuple[int, int]:
    """(bytes of this device's parameter shards, bytes of all parameters);
    with `blocks_only`, of the decoder blocks' parameters only."""
    import jax

    from codemix.model import decoder
    from codemix.train.partitioning import logical_to_spec

    _, axes = decoder.graphdef_and_axes(cfg)
    shapes = decoder.abstract_params(cfg)
    fake = _MeshShape(mesh)
    local = total = 0
    ax_leaves = jax.tree.leaves(axes, is_leaf=lambda t: isinstance(t, tuple))
    for ax, (path, x) in zip(ax_leaves, jax.tree_util.tree_leaves_with_path(shapes)):
        if blocks_only and "layers" not in jax.tree_util.keystr(path):
            continue
        nbytes = int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
        total += nbytes
        local += nbytes // _shard_factor(logical_to_spec(ax, x.shape, fake), mesh)
    return local, total


def _div(n: int, by: int) -> float:
    """Split `n` over `by` devices if it divides (as logical_to_spec does), else keep it whole."""
    return n / by if by > 1 and n % by == 0 else float(n)


def attention_blocks(seq_len: int, block: int) -> tuple[int, int]:
    """(C, B): query blocks per row and tokens per block of the training
    attention (`layers.block_causal_attention`, which uses one block when the
    length is not a multiple of `block`)."""
    if block <= 0 or seq_len % block or seq_len <= block:
        return 1, seq_len
    return seq_len // block, block


@dataclasses.dataclass(frozen=True)
class Buffer:
    """One kind of buffer kept per block: elements per token, bytes per element,
    and the remat policies (accelerator model) that save it."""

    name: str
    elems: float
    itemsize: int
    saved_by: tuple[str, ...] = ("none",)


_ALL = ("none", "dots", "dots_no_batch", "full")
_DOTS = ("none", "dots", "dots_no_batch")
_BATCHED_DOTS = ("none", "dots")


def block_buffers(cfg: ModelConfig, rows: float, seq_len: int, mesh: dict, backend: str) -> list[Buffer]:
    """The buffers one decoder block keeps for its backward pass, per token on
    this device (see the module docstring)."""
    t = mesh["tensor"]
    d, h = cfg.d_model, cfg.head_dim
    n, k, f = _div(cfg.num_heads, t), _div(cfg.num_kv_heads, t), _div(cfg.d_ff, t)
    C, B = attention_blocks(seq_len, cfg.attention_block)
    scores = n * B * (C + 1) / 2  # per token: each query block scores keys up to its end
    act = np.dtype(cfg.compute_dtype).itemsize
    norms = 1 if cfg.parallel_block else 2
    swiglu = cfg.activation == "swiglu"
    if backend == "cpu":
        tokens = rows * seq_len
        per_norm = 4 if tokens >= CPU_NORM_SPLIT_TOKENS else 2
        one_device = math.prod(mesh.values()) == 1
        s = 3 if one_device and rows * n >= CPU_SOFTMAX_SPLIT_SLICES else 2
        mlp_total = 5 if swiglu else 3
        if act < 4:
            mlp_low = 4 if swiglu else 2
        else:
            mlp_low = 0
            if cfg.remat != "none" and swiglu:
                mlp_total = 4  # the sigmoid is recomputed inside its consumer
        return [
            Buffer("norms", norms * per_norm * d, 4),
            Buffer("residuals", 2 * d, 4),
            Buffer("q", n * h, 4),
            Buffer("kv_prefixes", k * h * (C + 1), 4),
            Buffer("scores", s * scores, 4),
            Buffer("attention_out", n * h, 4),
            Buffer("mlp", (mlp_total - mlp_low) * f, 4),
            Buffer("mlp_compute_dtype", mlp_low * f, act),
        ]
    return [
        Buffer("block_input", d, act, _ALL),
        Buffer("norm_stats", norms * d, 4),
        Buffer("norm_out", norms * d, act),
        Buffer("qkv", (n + 2 * k) * h, act, _DOTS),
        Buffer("scores", scores, 4, _BATCHED_DOTS),
        Buffer("softmax", scores, 4),
        Buffer("probs", scores, act),
        Buffer("attention_out", n * h, act, _BATCHED_DOTS),
        Buffer("projections_out", 2 * d, act, _DOTS),  # attention output and MLP down
        Buffer("residual", d, act),
        Buffer("mlp_in", (2 if swiglu else 1) * f, act, _DOTS),
        Buffer("mlp_act", (2 if swiglu else 1) * f, act),
    ]


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
        out.update(argument_bytes=self.argument_bytes, backward_bytes=self.backward_bytes,
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
    batch_shards = mesh["data"] * mesh["fsdp"]
    if global_batch % batch_shards:
        raise ValueError(
            f"global batch {global_batch} is not divisible by data x fsdp = {batch_shards}; "
            f"change BATCH_SIZE or the mesh in the runtime gin."
        )
    rows = global_batch / batch_shards
    micro_rows = rows / grad_accum_steps
    tokens = micro_rows * seq_len
    param_local, _ = param_bytes_per_device(cfg, mesh)
    # The parameters as one device holds them after the FSDP all-gather.
    param_gathered, _ = param_bytes_per_device(cfg, {**mesh, "fsdp": 1})
    opt = 2 * param_local + 2 * 4
    batch = int(rows * (BATCH_FEATURES_2D * seq_len + BATCH_FEATURES_1D) * 4)
    act = np.dtype(cfg.compute_dtype).itemsize
    storage = np.dtype(cfg.storage_dtype).itemsize
    d, vocab = cfg.d_model, _div(cfg.vocab_size, mesh["tensor"])

    buffers = block_buffers(cfg, micro_rows, seq_len, mesh, backend)
    if backend == "cpu":
        per_block = sum(b.elems * b.itemsize for b in buffers)
        norm_bufs = 4 if tokens >= CPU_NORM_SPLIT_TOKENS else 2
        edges = (2 + norm_bufs) * d * 4  # embedding lookup (gather + select), final norm
        activations = tokens * (cfg.num_layers * per_block + edges)
        logits = 2 * tokens * vocab * 4
        if act < 4:  # the bf16 logits, or the tied head's f32 gradient, at the peak
            logits += max(tokens * vocab * act, vocab * d * 4 if cfg.tie_embeddings else 0)
        weights = param_gathered * 4 // storage if (mesh["fsdp"] > 1 or act < 4) else 0
    else:
        kept = sum(b.elems * b.itemsize for b in buffers if cfg.remat in b.saved_by)
        working = 0 if cfg.remat == "none" else sum(b.elems * b.itemsize for b in buffers)
        edges = d * act + d * 4 + d * act  # embedding lookup, final norm (stats + output)
        activations = tokens * (cfg.num_layers * kept + working + edges)
        logits = 2 * tokens * vocab * 4 + (tokens * vocab * act if act < 4 else 0)
        cast = mesh["fsdp"] > 1 or act != storage
        weights = param_gathered * act // storage if cast else 0
    if not cfg.tie_embeddings and (backend != "cpu" or mesh["fsdp"] == 1):
        # The head's transposed copy and its gradient (XLA:CPU under FSDP keeps
        # only the gathered head, already counted in `weights`).
        logits += 2 * vocab * d * 4
    accum = 0
    if grad_accum_steps > 1:
        # The accumulator (zeros_like(params), sharded like them) and, under
        # FSDP, the blocks' gathered weights once more: XLA hoists their
        # all-gathers out of the microbatch loop and carries them through it.
        accum = param_local
        if mesh["fsdp"] > 1:
            accum += param_bytes_per_device(cfg, {**mesh, "fsdp": 1}, blocks_only=True)[0]
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
        "platform": mesh.devices.flat[0].platform,
    }
