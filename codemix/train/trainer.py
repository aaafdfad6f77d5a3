"""The train loop: set up mesh, state, data and checkpoints, then step.

Restart semantics: if `<workdir>/checkpoints` holds a finished checkpoint, the
run resumes from the latest one (params, optimizer, step, data iterator), so
the batches after a restart are exactly those the uninterrupted run would have
seen. Otherwise it starts from `init_from` (weights only, fresh optimizer and
step counter) or from a fresh initialisation.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import time
from typing import Callable, Sequence

import gin
import jax
import numpy as np
from jax.experimental import multihost_utils

from codemix.data.pipeline import make_train_iterator
from codemix.model.config import ModelConfig
from codemix.model.info import model_info
from codemix.train import checkpointing, partitioning
from codemix.train.metrics import MetricWriter, peak_flops_per_device, read_metrics
from codemix.train.optimizer import make_optimizer, make_schedule
from codemix.train.state import fresh_state, state_layout
from codemix.train.step import jit_train_step, make_train_step


class Preempted(SystemExit):
    """Raised after a SIGTERM/SIGINT-triggered checkpoint was written."""


@contextlib.contextmanager
def _stop_on_signals(flag: dict):
    def handler(signum, frame):
        if flag.get("stop"):
            raise KeyboardInterrupt  # second signal: give up at once
        logging.warning("signal %d: will checkpoint and stop after this step", signum)
        flag["stop"] = signum

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


def _any_process(flag: bool) -> bool:
    if jax.process_count() == 1:
        return flag
    return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


def _truncate_metrics(workdir: str, last_step: int) -> None:
    """After resuming from `last_step`, drop log lines of steps that will be redone."""
    if jax.process_index() != 0:
        return
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return
    keep = [r for r in read_metrics(workdir) if r["step"] <= last_step]
    with open(path, "w") as f:
        for r in keep:
            f.write(json.dumps(r, sort_keys=True) + "\n")


def _global_batch(local: dict, shardings: dict) -> dict:
    out = {}
    for k, v in local.items():
        global_shape = (v.shape[0] * jax.process_count(),) + v.shape[1:]
        out[k] = jax.make_array_from_process_local_data(shardings[k], v, global_shape)
    return out


def steps_for(train_steps: int | None, token_budget: float | None, tokens_per_step: int) -> int:
    """Steps of a run given either steps or a token budget (not both)."""
    if (train_steps is None) == (token_budget is None):
        raise ValueError(
            "set exactly one of train.train_steps (macro TRAIN_STEPS) and train.token_budget "
            f"(tokens); got train_steps={train_steps}, token_budget={token_budget}."
        )
    if train_steps is not None:
        if train_steps <= 0:
            raise ValueError(f"train.train_steps must be positive, got {train_steps}.")
        return int(train_steps)
    if token_budget <= 0:
        raise ValueError(f"train.token_budget must be positive, got {token_budget}.")
    return int(math.ceil(token_budget / tokens_per_step))


def _heldout_evaluator(cfg, iterator, layout, mesh):
    """The held-out sets packed with the run's own vocabulary and sharded like training."""
    import seqio

    from codemix.data import heldout as heldout_data
    from codemix.eval.perplexity import HeldOutEvaluator
    from codemix.train.state import ROW_FEATURES

    vocab = seqio.get_mixture_or_task(iterator.source_names[0]).output_features["targets"].vocabulary
    start = time.perf_counter()
    docs = heldout_data.documents()
    rows_sh = {k: layout.batch_shardings[k] for k in ROW_FEATURES}
    ev = HeldOutEvaluator(cfg, vocab.encode, vocab.eos_id, iterator.sequence_length,
                          iterator.global_batch_size, docs, layout.shardings["params"], rows_sh, mesh)
    logging.info("held-out sets: %s (%.1fs to build)",
                 {f: p.num_rows for f, p in ev.sets.items()}, time.perf_counter() - start)
    return ev


def _evaluate_heldout(evaluator, params, step: int, workdir: str) -> dict:
    from codemix.eval.perplexity import flat_metrics

    start = time.perf_counter()
    results = evaluator(params)
    seconds = time.perf_counter() - start
    if jax.process_index() == 0:
        os.makedirs(os.path.join(workdir, "heldout"), exist_ok=True)
        doc = {"step": int(step), "seconds": seconds,
               "families": {f: r.to_json() for f, r in results.items()}}
        path = os.path.join(workdir, "heldout", f"step_{int(step)}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(doc, f)
        os.replace(path + ".tmp", path)
    return {**flat_metrics(results), "val/seconds": seconds}


@gin.configurable
def train(
    workdir: str,
    train_steps: int | None = None,
    token_budget: float | None = None,
    model: ModelConfig | None = None,
    seed: int = 0,
    grad_accum_steps: int = 1,
    schedule_steps: int | None = None,
    log_every: int = 10,
    checkpoint_every: int = 100,
    keep_checkpoints: int = 3,
    async_checkpoints: bool = True,
    init_from: str | None = None,
    init_from_step: int | None = None,
    init_optimizer_from_parent: bool = False,
    peak_flops: float | None = None,
    progress: bool | None = None,
    hooks: Sequence[Callable] = (),
    eval_every: int | None = None,
    heldout: bool = True,
) -> dict:
    """Train (or resume) a run in `workdir`. Returns a summary dict.

    Args:
      workdir: run directory (checkpoints, metrics.jsonl, operative_config.gin).
      train_steps: optimizer steps in this run (macro TRAIN_STEPS).
      token_budget: alternatively, the run's length in tokens (batch rows x
        sequence length per step); steps = ceil(budget / tokens per step).
        Exactly one of train_steps and token_budget must be set. Both the
        budget and the derived steps are written to run_info.json.
      model: decoder config (default: ModelConfig as bound in gin).
      seed: parameter-initialisation seed (the data seed is
        make_train_iterator.seed). Deterministic by default.
      grad_accum_steps: microbatches per step; the global batch is unchanged.
      schedule_steps: length of the LR schedule in steps (default train_steps).
      log_every: steps between metrics.jsonl lines.
      checkpoint_every: steps between checkpoints (one is always written at the end).
      keep_checkpoints: how many recent checkpoints to keep.
      async_checkpoints: write checkpoints in the background.
      init_from: weights-only start from another run's workdir / step dir /
        imported model (ignored when this workdir already has a checkpoint).
      init_from_step: step of `init_from` to use (default: its latest).
      init_optimizer_from_parent: with init_from, also take the parent's
        optimizer state (cooldowns that carry Adam moments); the step counter
        and schedule still start fresh.
      peak_flops: per-device peak FLOP/s for MFU (default: datasheet, or
        measured f32 matmul peak on CPU).
      progress: tqdm bar (default: when stderr is a terminal).
      hooks: callables hook(step, state, cfg, workdir) -> dict|None called
        after each step; a hook with an `every` attribute runs every that many
        steps. Returned dicts are merged into the next metrics line.
      eval_every: steps between held-out evaluations (None = only at the end).
      heldout: measure `val/<family>/loss` (nats per token) and
        `val/<family>/bpb` (bits per UTF-8 byte) on every family's fixed
        held-out set (codemix/data/heldout.py, sized by HeldOutOptions)
        every `eval_every` steps and at the end of the run, whatever the
        run's mixture; per-document values go to heldout/step_<N>.json.
    """
    cfg = model or ModelConfig()
    os.makedirs(workdir, exist_ok=True)
    mesh = partitioning.make_mesh()
    iterator = make_train_iterator()
    if iterator.vocab_size > cfg.vocab_size:
        raise ValueError(
            f"the data's vocabulary has {iterator.vocab_size} ids but the model's vocab_size is "
            f"{cfg.vocab_size}; set ModelConfig.vocab_size (macro VOCAB_SIZE) >= {iterator.vocab_size}."
        )
    num_sources = len(iterator.source_names)
    seq_len, global_batch = iterator.sequence_length, iterator.global_batch_size
    train_steps = steps_for(train_steps, token_budget, global_batch * seq_len)
    schedule = make_schedule(total_steps=schedule_steps or train_steps)
    optimizer = make_optimizer(schedule)

    # Abstract state and its shardings, all from the one rules table.
    layout = state_layout(cfg, optimizer, mesh)
    abstract_params, abstract_opt = layout.abstract_params, layout.abstract_opt_state
    state_sh, batch_sh, row_sh = layout.shardings, layout.batch_shardings, layout.row_sharding
    param_sh, opt_sh = state_sh["params"], state_sh["opt_state"]

    ckpt = checkpointing.Checkpointer(workdir, checkpoint_every, keep_checkpoints, async_checkpoints)
    latest = ckpt.latest_step()
    meta = {"tokens": 0, "tokens_by_source": [0.0] * num_sources,
            "repeated_rows_by_source": [0] * num_sources, "process_count": jax.process_count()}
    if latest is not None:
        logging.info("resuming %s from step %d", workdir, latest)
        abstract_state = {"params": abstract_params, "opt_state": abstract_opt}
        state, meta, latest = ckpt.restore_latest(abstract_state, state_sh, iterator)  # newest good one
        _truncate_metrics(workdir, latest)
        start = latest
    elif init_from:
        params, src_step = checkpointing.load_params(init_from, abstract_params, param_sh, init_from_step)
        state = fresh_state(cfg, optimizer, layout, params=params)
        if init_optimizer_from_parent:
            state["opt_state"] = checkpointing.load_opt_state(init_from, abstract_opt, opt_sh, src_step)
        logging.info("initialised weights from %s (step %d); %s optimizer", init_from, src_step,
                     "carried" if init_optimizer_from_parent else "fresh")
        start = 0
    else:
        state = fresh_state(cfg, optimizer, layout, seed=seed)
        start = 0

    step_fn = make_train_step(cfg, optimizer, schedule, num_sources, grad_accum_steps, row_sh)
    jitted = jit_train_step(step_fn, state_sh, batch_sh, mesh)

    heldout_eval = _heldout_evaluator(cfg, iterator, layout, mesh) if heldout else None
    if eval_every is not None and eval_every <= 0:
        raise ValueError(f"train.eval_every must be a positive number of steps or None, got {eval_every}.")

    info = model_info(cfg, seq_len)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "operative_config.gin"), "w") as f:
            f.write(gin.operative_config_str())
        run_info = {
            "train_steps": train_steps,
            "token_budget": token_budget,
            "tokens_per_step": global_batch * seq_len,
            "batch_size": global_batch,
            "sequence_length": seq_len,
            "sources": iterator.source_names,
            "requested_shares": iterator.rates,
            "params": info.total_params,
            "flops_per_token": info.flops_per_token,
            "init_from": init_from,
            "devices": jax.device_count(),
            "processes": jax.process_count(),
        }
        with open(os.path.join(workdir, "run_info.json"), "w") as f:
            json.dump(run_info, f, indent=2)
    peak, peak_source = peak_flops_per_device(peak_flops)
    total_peak = peak * jax.device_count()
    writer = MetricWriter(workdir)
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show and jax.process_index() == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=train_steps, initial=start, desc=os.path.basename(workdir.rstrip("/")), unit="step")

    names = iterator.source_names
    stop = {}
    pending: list[dict] = []
    extra: dict = {}
    last_time, last_step = time.perf_counter(), start
    loop_start, eval_seconds, interval_eval = last_time, 0.0, 0.0
    step = start
    with _stop_on_signals(stop):
        while step < train_steps:
            batch = _global_batch(next(iterator), batch_sh)
            state, metrics = jitted(state, batch)
            step += 1
            pending.append(metrics)
            for hook in hooks:
                if step % getattr(hook, "every", 1) == 0:
                    extra.update(hook(step, state, cfg, workdir) or {})
            if heldout_eval is not None and (step == train_steps or (eval_every and step % eval_every == 0)):
                # Steps run asynchronously: wait for them first, so their time is not
                # counted as evaluation time.
                jax.block_until_ready(state["params"])
                t_eval = time.perf_counter()
                extra.update(_evaluate_heldout(heldout_eval, state["params"], step, workdir))
                interval_eval += time.perf_counter() - t_eval
            if step % log_every == 0 or step == train_steps:
                got = jax.device_get(pending)
                pending = []
                now = time.perf_counter()
                # Throughput counts train steps only, not the held-out evaluation.
                dt = max(now - last_time - interval_eval, 1e-9)
                eval_seconds, interval_eval = eval_seconds + interval_eval, 0.0
                loss_s = np.sum([m["loss_sum_by_source"] for m in got], axis=0)
                tok_s = np.sum([m["tokens_by_source"] for m in got], axis=0)
                rep_s = np.sum([m["repeated_rows_by_source"] for m in got], axis=0)
                meta["repeated_rows_by_source"] = [
                    int(a + b) for a, b in zip(meta["repeated_rows_by_source"], rep_s)
                ]
                meta["tokens_by_source"] = [a + float(b) for a, b in zip(meta["tokens_by_source"], tok_s)]
                meta["tokens"] = float(sum(meta["tokens_by_source"]))
                slots = (step - last_step) * global_batch * seq_len
                record = {
                    "step": step,
                    "tokens": meta["tokens"],
                    "loss": float(loss_s.sum() / max(tok_s.sum(), 1.0)),
                    "lr": float(got[-1]["lr"]),
                    "grad_norm": float(got[-1]["grad_norm"]),
                    "tokens_per_sec": float(tok_s.sum() / dt),
                    "step_time": dt / (step - last_step),
                    "mfu": float(info.flops_per_token * slots / dt / total_peak),
                }
                for i, n in enumerate(names):
                    if tok_s[i] > 0:
                        record[f"loss/{n}"] = float(loss_s[i] / tok_s[i])
                    record[f"tokens/{n}"] = meta["tokens_by_source"][i]
                    if meta["repeated_rows_by_source"][i]:
                        record[f"repeated_rows/{n}"] = meta["repeated_rows_by_source"][i]
                record.update(extra)
                extra = {}
                writer.write(record)
                checkpointing.stop_if_non_finite(got, last_step + 1, ckpt)  # NonFiniteLoss, nothing saved
                last_time, last_step = now, step
                if bar is not None:
                    bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_sec']:.0f}")
            if bar is not None:
                bar.update(1)
            stopping = _any_process(bool(stop.get("stop")))
            if stopping or step == train_steps:
                ckpt.save(step, state, iterator, meta, force=True)
                break
            if step % checkpoint_every == 0:
                ckpt.save(step, state, iterator, meta)
    ckpt.close()
    writer.close()
    if bar is not None:
        bar.close()
    loop_seconds = time.perf_counter() - loop_start
    summary = {
        "train_seconds": loop_seconds - eval_seconds,
        "heldout_seconds": eval_seconds,
        "workdir": workdir,
        "step": step,
        "tokens": meta["tokens"],
        "params": info.total_params,
        "flops_per_token": info.flops_per_token,
        "peak_flops_per_device": peak,
        "peak_flops_source": peak_source,
        "preempted": bool(stop.get("stop")),
    }
    if stop.get("stop"):
        logging.warning("stopped at step %d by signal %d; checkpoint written", step, stop["stop"])
        raise Preempted(128 + int(stop["stop"]))
    return summary
