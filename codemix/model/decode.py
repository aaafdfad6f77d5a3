"""Batched autoregressive generation with a KV cache: greedy or sampled.

Layout of a batch. Prompts of different lengths are LEFT-padded to one width
P; padding slots get segment id 0, so attention never reads them, and each
prompt's positions count from 0 at its first real token. The whole padded
block is written into the cache in one prefill call; then every step feeds one
token per row (segment id 1, position = prompt length + tokens so far). The
cache applies the same segment/causal mask as a full forward pass, so cached
decoding gives the same tokens as recomputing the whole sequence each step.

Stopping. A row is finished when it emits `eos_id` or when `is_done(tokens)`
says so (string stop sequences: `StopSequences`). The loop checks every
`check_every` steps (so the device can run ahead of the host) and ends when
every row is finished or `max_new_tokens` is reached. Returned token lists end
before the EOS; `StopSequences.truncate` cuts a decoded text at its first stop
sequence.

Shapes are bucketed (prompt width and batch rows padded up) so one compiled
step serves many batches.

Placement. Where the batch, the cache and the outputs live is a `Placement`:
this module's default is one device (numpy in, device_get out);
`codemix.eval.mesh.placement(params)` gives the mesh one (rows over the
mesh's batch axes, each host feeding its rows, tokens gathered to every host),
so every process runs the same steps and stops at the same step.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from codemix.model import decoder
from codemix.model.config import ModelConfig

log = logging.getLogger(__name__)


class StopSequences:
    """String stop sequences checked on decoded text.

    `is_done(tokens)` decodes the generated tokens and reports whether any stop
    string occurs in them; `truncate(text)` cuts at the earliest occurrence.
    With `skip_leading_whitespace`, stops are only looked for after the first
    non-whitespace character, so a short answer that the model starts on a new
    line ("\nParis.") is not cut to nothing by a "\n" stop.
    """

    def __init__(self, stops: Sequence[str], detokenize: Callable[[list[int]], str],
                 skip_leading_whitespace: bool = False):
        self.stops = tuple(s for s in stops if s)
        self.detokenize = detokenize
        self.skip_leading_whitespace = skip_leading_whitespace

    def _start(self, text: str) -> int:
        if not self.skip_leading_whitespace:
            return 0
        return len(text) - len(text.lstrip())

    def _first_stop(self, text: str) -> int:
        start, cut = self._start(text), -1
        for s in self.stops:
            i = text.find(s, start)
            if i != -1 and (cut == -1 or i < cut):
                cut = i
        return cut

    def truncate(self, text: str) -> str:
        cut = self._first_stop(text)
        return text if cut == -1 else text[:cut]

    def is_done(self, tokens: list[int]) -> bool:
        if not self.stops:
            return False
        return self._first_stop(self.detokenize(tokens)) != -1


class Placement:
    """Single-device placement (the default): arrays stay as they are.

    A subclass on a mesh rounds the batch rows up to its row shards, puts
    row-first arrays and replicated values on the mesh, builds sharded caches
    and gathers results to host numpy on every process."""

    def round_rows(self, rows: int) -> int:
        return rows

    def rows(self, x):
        return x

    def replicated(self, x):
        return x

    def gather(self, tree):
        return jax.device_get(tree)

    def init_cache(self, cfg: ModelConfig, batch: int, max_len: int) -> list[dict]:
        return decoder.init_cache(cfg, batch, max_len)


def _round_up(n: int, multiple: int) -> int:
    return max(multiple, -(-n // multiple) * multiple)


@functools.partial(jax.jit, static_argnames=("cfg",), donate_argnames=("caches",))
def _prefill(cfg: ModelConfig, params, tokens, segment_ids, positions, caches):
    logits, caches = decoder.apply(cfg, params, tokens, segment_ids, positions, caches)
    return logits[:, -1, :], caches


@functools.partial(jax.jit, static_argnames=("cfg", "greedy"), donate_argnames=("caches",))
def _step(cfg: ModelConfig, params, logits, positions, caches, key, temperature, valid, greedy: bool):
    """Pick the next token from `logits` (ids >= `valid` excluded), then run
    it through the model."""
    logits = jnp.where(jnp.arange(logits.shape[-1]) < valid, logits, -jnp.inf)
    if greedy:
        token = jnp.argmax(logits, axis=-1)
    else:
        token = jax.random.categorical(key, logits / temperature, axis=-1)
    token = token.astype(jnp.int32)[:, None]
    new_logits, caches = decoder.apply(
        cfg, params, token, jnp.ones_like(token), positions[:, None], caches
    )
    return token[:, 0], new_logits[:, -1, :], caches


def generate(
    cfg: ModelConfig,
    params: dict,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    eos_id: int | None = None,
    is_done: Callable[[list[int]], bool] | None = None,
    temperature: float = 0.0,
    seed: int = 0,
    valid_vocab_size: int | None = None,
    batch_size: int = 8,
    pad_multiple: int = 64,
    check_every: int = 8,
    progress: bool = False,
    placement: Placement | None = None,
) -> list[list[int]]:
    """Generate up to `max_new_tokens` tokens after each prompt.

    Args:
      cfg, params: the decoder.
      prompts: token ids, at least one per prompt.
      max_new_tokens: generation budget per prompt (tokens).
      eos_id: a row stops after emitting it (excluded from the output).
      is_done: extra per-row stop test on the generated tokens (e.g.
        `StopSequences(...).is_done`); the returned tokens are NOT cut, so
        truncate the decoded text with `StopSequences.truncate`.
      temperature: 0 is greedy (deterministic); > 0 samples from
        softmax(logits / temperature) with a key derived from `seed`.
      valid_vocab_size: never emit ids >= this (the model's embedding table is
        often padded beyond the tokenizer's vocabulary); default: all ids.
      batch_size: rows per forward call (the last batch is padded up).
      pad_multiple: prompt widths are padded up to a multiple of this, so few
        shapes get compiled.
      check_every: steps between host-side stop checks.
      progress: show a tqdm bar over batches.
      placement: where batches and caches live (default: one device); on a
        mesh `batch_size` is rounded up to a multiple of its row shards.

    Returns: one list of generated token ids per prompt, in input order.
    """
    if max_new_tokens <= 0:
        return [[] for _ in prompts]
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty; generation needs at least one prompt token.")
    placement = placement or Placement()
    batch_size = placement.round_rows(batch_size)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    results: list[list[int]] = [[] for _ in prompts]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    key = jax.random.PRNGKey(seed)
    iterator = batches
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(batches, desc="generate", unit="batch")
    for b, idx in enumerate(iterator):
        rows = [list(prompts[i]) for i in idx]
        out = _generate_batch(
            cfg, params, rows, batch_size, max_new_tokens, eos_id, is_done,
            temperature, jax.random.fold_in(key, b), pad_multiple, check_every,
            valid_vocab_size or cfg.vocab_size, placement,
        )
        for i, tokens in zip(idx, out):
            results[i] = tokens
    return results


def _generate_batch(cfg, params, rows, batch_size, max_new_tokens, eos_id, is_done,
                    temperature, key, pad_multiple, check_every, valid, placement) -> list[list[int]]:
    n = len(rows)
    width = _round_up(max(len(r) for r in rows), pad_multiple)
    tokens = np.zeros((batch_size, width), np.int32)
    segs = np.zeros((batch_size, width), np.int32)
    pos = np.zeros((batch_size, width), np.int32)
    lengths = np.ones((batch_size,), np.int32)
    for r in range(batch_size):
        row = rows[r] if r < n else rows[0][-1:]  # filler rows: one token, ignored
        tokens[r, width - len(row):] = row
        segs[r, width - len(row):] = 1
        pos[r, width - len(row):] = np.arange(len(row))
        lengths[r] = len(row)
    cache_len = width + _round_up(max_new_tokens, pad_multiple)
    caches = placement.init_cache(cfg, batch_size, cache_len)
    logits, caches = _prefill(cfg, params, *placement.rows([tokens, segs, pos]), caches)
    greedy = temperature <= 0.0
    temp = placement.replicated(jnp.float32(max(temperature, 1e-6)))
    valid = placement.replicated(jnp.int32(valid))
    generated: list[jax.Array] = []
    host: np.ndarray = np.zeros((batch_size, 0), np.int32)
    done = np.zeros((n,), bool)
    for t in range(max_new_tokens):
        token, logits, caches = _step(
            cfg, params, logits, placement.rows(lengths + t), caches,
            placement.replicated(jax.random.fold_in(key, t)), temp, valid, greedy,
        )
        generated.append(token)
        if (t + 1) % check_every == 0 or t + 1 == max_new_tokens:
            host = np.concatenate([host, np.stack(placement.gather(generated), axis=1)], axis=1)
            generated = []
            for r in range(n):
                if done[r]:
                    continue
                seq = host[r].tolist()
                if (eos_id is not None and eos_id in seq) or (is_done is not None and is_done(seq)):
                    done[r] = True
            if done.all():
                break
    out = []
    for r in range(n):
        seq = host[r].tolist()
        if eos_id is not None and eos_id in seq:
            seq = seq[: seq.index(eos_id)]
        out.append(seq)
    return out
