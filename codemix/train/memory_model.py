"""The memory model behind the planner: which buffers one device holds.

Memory per device under a mesh, from the config alone (shapes only: nothing is
compiled or allocated). Notation: b = rows per device per microbatch, L =
sequence length, T = b x L tokens per device, d, f, n, k, h, V as in
ModelConfig with n, k, f and V divided by the mesh axes their logical axes
("heads", "kv_heads", "mlp", "vocab") are split over, where that divides them
(as `partitioning.logical_to_spec` splits them); the training attention cuts a
row into C query blocks of B tokens (B = L and C = 1 when the row is one block).
Mesh sizes are {mesh axis: size} dicts (`partitioning.mesh_sizes`); which axis
does what is read from `partitioning.logical_axis_rules()`, never named here.

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
                  split over the non-FSDP axes only): XLA keeps the forward pass's
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
    the batch sharding (decoder.RESIDUAL_AXES), XLA's propagation split
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
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from codemix.model.config import ModelConfig
from codemix.pytree import path_names
from codemix.train import partitioning

BATCH_FEATURES_2D = 5  # input/target tokens, segment ids, positions, loss weights
BATCH_FEATURES_1D = 2  # source_id, epoch
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

    _, axes = decoder.graphdef_and_axes(cfg)
    shapes = decoder.abstract_params(cfg)
    fake = _MeshShape(mesh)
    local = total = 0
    ax_leaves = jax.tree.leaves(axes, is_leaf=lambda t: isinstance(t, tuple))
    for ax, (path, x) in zip(ax_leaves, jax.tree_util.tree_leaves_with_path(shapes)):
        if blocks_only and not {"layers", "blocks"} & set(path_names(path)):
            continue
        nbytes = int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
        total += nbytes
        local += nbytes // _shard_factor(partitioning.logical_to_spec(ax, x.shape, fake), mesh)
    return local, total


def split_size(n: int, by: int) -> float:
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


_NAMED = ("save_qkv", "save_qkv_attn", "save_out_proj")  # config.REMAT_NAMES
_ALL = ("none", "dots", "dots_no_batch", "full") + _NAMED
_DOTS = ("none", "dots", "dots_no_batch") + _NAMED
_BATCHED_DOTS = ("none", "dots")
_ATTN_OUT = ("none", "dots", "save_qkv_attn", "save_out_proj")
_OUT_PROJ = ("none", "dots", "dots_no_batch", "save_out_proj")


def block_buffers(cfg: ModelConfig, rows: float, seq_len: int, mesh: dict, backend: str) -> list[Buffer]:
    """The buffers one decoder block keeps for its backward pass, per token on
    this device (see the module docstring)."""
    d, h = cfg.d_model, cfg.head_dim
    n = split_size(cfg.num_heads, partitioning.shards_of(mesh, "heads"))
    k = split_size(cfg.num_kv_heads, partitioning.shards_of(mesh, "kv_heads"))
    f = split_size(cfg.d_ff, partitioning.shards_of(mesh, "mlp"))
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
        Buffer("attention_out", n * h, act, _ATTN_OUT),
        Buffer("projections_out", 2 * d, act, _OUT_PROJ),  # attention output and MLP down
        Buffer("residual", d, act),
        Buffer("mlp_in", (2 if swiglu else 1) * f, act, ("none", "dots", "dots_no_batch")),
        Buffer("mlp_act", (2 if swiglu else 1) * f, act),
    ]
