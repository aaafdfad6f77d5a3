"""Log-likelihood of continuations given contexts, scored in packed batches.

A request is (context tokens, continuation tokens). Its token sequence
s = context + continuation is fed as inputs s[:-1] with targets s[1:], and its
score is the sum of log P(target) over the len(continuation) targets that are
continuation tokens.

Shared contexts. Requests with the same context (the choices of one
multiple-choice question) form a group that holds its context once: a group
is laid out as the shared prefix (inputs context[:-1], branch 0), then one
branch per continuation (inputs context[-1] + continuation[:-1], targets the
continuation, branch j). The decoder's branch-aware mask lets a branch see the
prefix and itself but not its siblings, and each branch's positions continue
from the prefix, so every continuation gets exactly the log-likelihood it would
get alone. A group occupies len(context) - 1 + sum(len(continuations)) slots
instead of sum(len(context) + len(continuation) - 1).

Packing (first-fit decreasing): groups are sorted by size, largest first, and
each goes into the first row of `row_len` slots with room left, else a new row
(groups longer than `row_len` go to rows of 2x, 4x, ... their size, see
`score_packed`). Inside a row each group is its own segment (segment ids
1, 2, ...; 0 is padding) and its positions restart at 0. Rows are batched
`batch_size` at a time with a fixed shape, so one compiled function serves a
whole benchmark. Only the scored slots go through the output projection and
the softmax over the vocabulary; on a small model that projection is a large
part of the cost. A group too long for `max_row_len` is split into several
groups (each with its own copy of the context); a single request that is still
too long keeps its continuation and the end of its context (left truncation,
counted and logged).

On a mesh (params sharded by `codemix.eval.mesh`), each batch's rows are
split over the mesh's batch axes and every host feeds its own rows; the rows
per call are rounded up to a multiple of the row shards (the added rows are
all padding and score nothing), and the scored log-probs are gathered to
every host.

`score_naive` scores one request per call (padded to a multiple of 64 tokens,
full logits); it is the baseline of benchmarks/eval_throughput.py and a
reference in tests.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from codemix.eval import mesh as eval_mesh
from codemix.model import decoder
from codemix.model.config import ModelConfig

log = logging.getLogger(__name__)

FEATURES = ("inputs", "targets", "segment_ids", "positions", "branch_ids")


@dataclasses.dataclass(frozen=True)
class Request:
    context: tuple[int, ...]
    continuation: tuple[int, ...]


@functools.partial(jax.jit, static_argnames=("cfg",))
def token_logprobs(cfg: ModelConfig, params, inputs, targets, segment_ids, positions):
    """log P(targets[b, t] | inputs[b, :t+1]) for every slot; 0 on padding."""
    logits, _ = decoder.apply(cfg, params, inputs, segment_ids, positions)
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    lp = picked - jax.nn.logsumexp(logits, axis=-1)
    return jnp.where(segment_ids > 0, lp, 0.0)


@functools.partial(jax.jit, static_argnames=("cfg",))
def scored_logprobs(cfg: ModelConfig, params, inputs, segment_ids, positions, branch_ids,
                    flat_slots, flat_targets):
    """log P(target) at chosen slots only: `flat_slots` [k] index the batch's
    slots flattened row-major, `flat_targets` [k] are their targets."""
    hidden, _ = decoder.apply(cfg, params, inputs, segment_ids, positions,
                              branch_ids=branch_ids, output="hidden")
    h = hidden.reshape(-1, hidden.shape[-1])[flat_slots]
    logits = decoder.project(cfg, params, h)
    picked = jnp.take_along_axis(logits, flat_targets[:, None], axis=-1)[:, 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)


def _check(req: Request) -> None:
    if not req.continuation:
        raise ValueError("a log-likelihood request needs a non-empty continuation.")
    if not req.context:
        raise ValueError("a log-likelihood request needs at least one context token.")


@dataclasses.dataclass
class _Group:
    context: list[int]
    members: list[int]  # request indices
    continuations: list[list[int]]

    @property
    def size(self) -> int:
        return len(self.context) - 1 + sum(len(c) for c in self.continuations)


def group_requests(requests: Sequence[Request], max_len: int) -> tuple[list[_Group], int]:
    """Groups of requests sharing a context, each at most `max_len` slots.

    Returns (groups, number of requests whose context was left-truncated)."""
    by_context: dict[tuple[int, ...], list[int]] = {}
    for i, r in enumerate(requests):
        _check(r)
        by_context.setdefault(tuple(r.context), []).append(i)
    groups, truncated = [], 0
    for ctx, idx in by_context.items():
        ctx = list(ctx)
        current = _Group(ctx, [], [])
        for i in idx:
            cont = list(requests[i].continuation)
            if len(cont) > max_len:
                raise ValueError(f"continuation of {len(cont)} tokens does not fit a row of "
                                 f"{max_len}; raise row_len / max_row_len.")
            if len(ctx) - 1 + len(cont) > max_len:  # too long even alone: truncate its context
                keep = max_len - len(cont) + 1
                groups.append(_Group(ctx[len(ctx) - keep:], [i], [cont]))
                truncated += 1
                continue
            if current.members and current.size + len(cont) > max_len:
                groups.append(current)
                current = _Group(ctx, [], [])
            current.members.append(i)
            current.continuations.append(cont)
        if current.members:
            groups.append(current)
    return groups, truncated


def pack(requests: Sequence[Request], row_len: int):
    """Group by context, then first-fit-decreasing packing into rows of
    `row_len` slots. Returns (arrays: dict of [rows, row_len] int32 for
    FEATURES, spans: per request (row, first scored slot, end slot), number of
    left-truncated requests)."""
    groups, truncated = group_requests(requests, row_len)
    return _pack_groups(groups, len(requests), row_len) + (truncated,)


def _pack_groups(groups: list[_Group], n_requests: int, row_len: int):
    order = sorted(range(len(groups)), key=lambda g: -groups[g].size)
    free = np.zeros((0,), np.int64)  # free slots per row
    placement: list = [None] * len(groups)
    for g in order:
        need = groups[g].size
        fits = np.nonzero(free >= need)[0]
        if fits.size:
            row = int(fits[0])
        else:
            row = free.size
            free = np.append(free, row_len)
        placement[g] = (row, row_len - int(free[row]))
        free[row] -= need
    rows = int(free.size)
    arrays = {k: np.zeros((rows, row_len), np.int32) for k in FEATURES}
    next_seg = np.ones((rows,), np.int32)
    spans: list = [None] * n_requests
    for g, group in enumerate(groups):
        row, at = placement[g]
        ctx = group.context
        seg = next_seg[row]
        next_seg[row] += 1
        shared = len(ctx) - 1
        a = arrays
        a["inputs"][row, at:at + shared] = ctx[:-1]
        a["targets"][row, at:at + shared] = ctx[1:]
        a["positions"][row, at:at + shared] = np.arange(shared)
        a["segment_ids"][row, at:at + shared] = seg
        at += shared
        for branch, (i, cont) in enumerate(zip(group.members, group.continuations), start=1):
            m = len(cont)
            a["inputs"][row, at:at + m] = [ctx[-1]] + cont[:-1]
            a["targets"][row, at:at + m] = cont
            a["positions"][row, at:at + m] = np.arange(shared, shared + m)
            a["segment_ids"][row, at:at + m] = seg
            a["branch_ids"][row, at:at + m] = branch
            spans[i] = (row, at, at + m)
            at += m
    return arrays, spans


def row_lengths(row_len: int, max_row_len: int) -> list[int]:
    """Row lengths used: row_len, 2 * row_len, ... up to max_row_len."""
    sizes = [row_len]
    while sizes[-1] * 2 <= max_row_len:
        sizes.append(sizes[-1] * 2)
    return sizes


def score_packed(
    cfg: ModelConfig,
    params: dict,
    requests: Sequence[Request],
    row_len: int = 256,
    batch_size: int = 2,
    progress: bool = False,
    max_row_len: int = 2048,
) -> np.ndarray:
    """Sum of continuation log-probabilities per request (float64 [n]).

    Groups (requests sharing a context) that fit `row_len` slots are packed
    into rows of that length; longer ones go to rows of 2x, 4x, ... `row_len`
    (up to `max_row_len`, beyond which groups are split and single requests
    left-truncated), with proportionally fewer rows per call so every call
    holds about batch_size * row_len tokens. Short rows keep the attention
    matrix (quadratic in the row length) small.
    """
    if not requests:
        return np.zeros((0,))
    sizes = row_lengths(row_len, max_row_len)
    groups, truncated = group_requests(requests, sizes[-1])
    if truncated:
        log.warning("%d of %d requests were longer than %d tokens; their contexts were "
                    "left-truncated", truncated, len(requests), sizes[-1])
    buckets: dict[int, list[_Group]] = {}
    for g in groups:
        buckets.setdefault(next(L for L in sizes if g.size <= L), []).append(g)
    out = np.zeros((len(requests),))
    mesh = eval_mesh.mesh_of(params)
    for length, bucket in sorted(buckets.items()):
        rows = eval_mesh.round_rows(max(1, batch_size * row_len // length), mesh)
        _score_bucket(cfg, params, bucket, len(requests), length, rows, progress, out, mesh)
    return out


def _score_bucket(cfg, params, groups, n_requests, row_len, batch_size, progress, out, mesh=None) -> None:
    arrays, spans = _pack_groups(groups, n_requests, row_len)
    rows = arrays["inputs"].shape[0]
    padded = -(-rows // batch_size) * batch_size
    if padded > rows:  # extra all-padding rows keep the batch shape fixed
        arrays = {k: np.concatenate([v, np.zeros((padded - rows, row_len), np.int32)]) for k, v in arrays.items()}
    scored = np.zeros((padded, row_len), bool)
    for span in spans:
        if span is not None:
            scored[span[0], span[1]:span[2]] = True
    # One static number of scored slots per call for the whole bucket (the
    # largest any batch needs, rounded up), so it compiles once.
    per_batch = scored.reshape(padded // batch_size, -1).sum(axis=1)
    k = int(min(-(-per_batch.max() // 64) * 64, batch_size * row_len))
    starts = range(0, padded, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"score (rows of {row_len})", unit="batch", leave=False)
    lp = np.zeros((padded, row_len))
    for s in starts:
        b = {name: v[s:s + batch_size] for name, v in arrays.items()}
        flat = np.flatnonzero(scored[s:s + batch_size])
        slots = np.zeros((k,), np.int32)
        slots[:flat.size] = flat
        targets = b["targets"].reshape(-1)[slots]
        b = eval_mesh.put_rows(mesh, {name: b[name] for name in ("inputs", "segment_ids", "positions", "branch_ids")})
        res = scored_logprobs(cfg, params, b["inputs"], b["segment_ids"], b["positions"],
                              b["branch_ids"], *eval_mesh.put_replicated(mesh, (slots, targets)))
        r, c = np.divmod(flat, row_len)
        lp[s + r, c] = np.asarray(res if mesh is None else eval_mesh.gather(res), np.float64)[:flat.size]
    for i, span in enumerate(spans):
        if span is not None:
            row, a, z = span
            out[i] = lp[row, a:z].sum()


def score_naive(cfg: ModelConfig, params: dict, requests: Sequence[Request], pad_multiple: int = 64) -> np.ndarray:
    """One request per forward call (the slow baseline)."""
    out = []
    for req in requests:
        seq = list(req.context) + list(req.continuation)
        n = len(seq) - 1
        width = max(pad_multiple, -(-n // pad_multiple) * pad_multiple)
        arrays = {k: np.zeros((1, width), np.int32) for k in ("inputs", "targets", "segment_ids", "positions")}
        arrays["inputs"][0, :n] = seq[:-1]
        arrays["targets"][0, :n] = seq[1:]
        arrays["segment_ids"][0, :n] = 1
        arrays["positions"][0, :n] = np.arange(n)
        lp = token_logprobs(cfg, params, arrays["inputs"], arrays["targets"],
                            arrays["segment_ids"], arrays["positions"])
        out.append(float(np.asarray(lp)[0, n - len(req.continuation) : n].sum()))
    return np.array(out)
