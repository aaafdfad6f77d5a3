"""Log-likelihood of continuations given contexts, scored in packed batches.

A request is (context tokens, continuation tokens). Its token sequence
s = context + continuation is fed as inputs s[:-1] with targets s[1:], so it
occupies len(s) - 1 slots, and its score is the sum of log P(target) over the
last len(continuation) slots.

Packing (first-fit decreasing): requests are sorted by length, longest first,
and each goes into the first row of `row_len` slots with room left, else a new
row (requests longer than `row_len` go to rows of 2x, 4x, ... its length, see
`score_packed`). Inside a row each request is its own segment (segment ids 1, 2, ...;
0 is padding) and its positions restart at 0, so the decoder's packing-aware
causal mask makes every request see only its own tokens: the log-likelihoods
equal those of scoring each request alone. Rows are batched `batch_size` at a
time with a fixed shape, so one compiled function serves a whole benchmark.
A request longer than `max_row_len` keeps its continuation and the end of its
context (left truncation, counted and logged).

`score_naive` scores one request per call (padded to a multiple of 64 tokens);
it is the baseline of benchmarks/eval_throughput.py and a reference in tests.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from codemix.model import decoder
from codemix.model.config import ModelConfig

log = logging.getLogger(__name__)


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


def _fit(req: Request, row_len: int) -> tuple[list[int], int, bool]:
    """Token sequence (context + continuation) cut to row_len + 1 tokens, the
    number of scored targets, and whether the context was truncated."""
    cont = list(req.continuation)
    ctx = list(req.context)
    if not cont:
        raise ValueError("a log-likelihood request needs a non-empty continuation.")
    if not ctx:
        raise ValueError("a log-likelihood request needs at least one context token.")
    if len(cont) > row_len:
        raise ValueError(
            f"continuation of {len(cont)} tokens does not fit a row of {row_len}; raise row_len."
        )
    seq = ctx + cont
    truncated = len(seq) - 1 > row_len
    if truncated:
        seq = seq[len(seq) - 1 - row_len :]
    return seq, len(cont), truncated


def pack(requests: Sequence[Request], row_len: int):
    """First-fit-decreasing packing. Returns (arrays dict of [rows, row_len],
    spans: per request (row, first scored slot, end slot), truncated count)."""
    fitted = [_fit(r, row_len) for r in requests]
    truncated = sum(t for _, _, t in fitted)
    order = sorted(range(len(fitted)), key=lambda i: -len(fitted[i][0]))
    free = np.zeros((0,), np.int64)  # free slots per row
    placement = [None] * len(fitted)
    for i in order:
        need = len(fitted[i][0]) - 1
        fits = np.nonzero(free >= need)[0]
        if fits.size:
            row = int(fits[0])
        else:
            row = free.size
            free = np.append(free, row_len)
        placement[i] = (row, row_len - int(free[row]))
        free[row] -= need
    rows = int(free.size)
    arrays = {k: np.zeros((rows, row_len), np.int32) for k in ("inputs", "targets", "segment_ids", "positions")}
    next_seg = np.ones((rows,), np.int32)
    spans = []
    for i, (seq, n_cont, _) in enumerate(fitted):
        row, start = placement[i]
        n = len(seq) - 1
        arrays["inputs"][row, start : start + n] = seq[:-1]
        arrays["targets"][row, start : start + n] = seq[1:]
        arrays["segment_ids"][row, start : start + n] = next_seg[row]
        arrays["positions"][row, start : start + n] = np.arange(n)
        next_seg[row] += 1
        spans.append((row, start + n - n_cont, start + n))
    return arrays, spans, truncated


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

    Requests that fit `row_len` slots are packed into rows of that length;
    longer ones go to rows of 2x, 4x, ... `row_len` (up to `max_row_len`,
    beyond which contexts are left-truncated), with proportionally fewer rows
    per call so every call holds about batch_size * row_len tokens. Short rows
    keep the attention matrix (quadratic in the row length) small, which is
    what costs most on CPU.
    """
    if not requests:
        return np.zeros((0,))
    sizes = row_lengths(row_len, max_row_len)
    buckets: dict[int, list[int]] = {}
    for i, r in enumerate(requests):
        need = len(r.context) + len(r.continuation) - 1
        buckets.setdefault(next((L for L in sizes if need <= L), sizes[-1]), []).append(i)
    out = np.zeros((len(requests),))
    for length, idx in sorted(buckets.items()):
        rows = max(1, batch_size * row_len // length)
        out[idx] = _score_bucket(cfg, params, [requests[i] for i in idx], length, rows, progress)
    return out


def _score_bucket(cfg, params, requests, row_len, batch_size, progress) -> np.ndarray:
    arrays, spans, truncated = pack(requests, row_len)
    if truncated:
        log.warning("%d of %d requests were longer than %d tokens; their contexts were "
                    "left-truncated", truncated, len(requests), row_len)
    rows = arrays["inputs"].shape[0]
    padded = -(-rows // batch_size) * batch_size
    if padded > rows:  # extra all-padding rows keep the batch shape fixed
        arrays = {k: np.concatenate([v, np.zeros((padded - rows, row_len), np.int32)]) for k, v in arrays.items()}
    starts = range(0, padded, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"score (rows of {row_len})", unit="batch", leave=False)
    outs = []
    for s in starts:
        b = {k: v[s : s + batch_size] for k, v in arrays.items()}
        outs.append(token_logprobs(cfg, params, b["inputs"], b["targets"], b["segment_ids"], b["positions"]))
    lp = np.concatenate([np.asarray(o, np.float64) for o in outs])
    return np.array([lp[row, a:b].sum() for row, a, b in spans])


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
