"""`train()`: one run, set up (run_setup.py), stepped (loop.py), accounted (phases.py).

Restart semantics: if `<workdir>/checkpoints` holds a finished checkpoint, the
run resumes from the latest one (params, optimizer, step, data iterator), so
the batches after a restart are exactly those the uninterrupted run would have
seen. Otherwise it starts from `init_from` (weights only, fresh optimizer and
step counter) or from a fresh initialisation. Before anything is written to
the run, its workdir is locked against a second trainer (run_lock.py) and its
stored training configuration is compared with this one (run_config.py): a
run is resumed only under the configuration it was trained with, unless
`allow_config_change`. Metrics, held-out records and TensorBoard events of
steps after the start step are dropped (rewind.py), so each step is logged
once and matches the weights. A full disk ends the run with one message
(workdir.py).

What a run is built from is visible in gin: `train.model`, `train.make_mesh`,
`train.make_iterator`, `train.make_schedule` and `train.make_optimizer` are
bound in gin/stages/ (their defaults are the same components, so a run
configured without the stage files still works).
"""
from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence

import jax
import numpy as np

import gin
from codemix import config as cm_config
from codemix.data.pipeline import make_train_iterator
from codemix.errors import RunLocked
from codemix.model.config import ModelConfig
from codemix.train import compile_cache, partitioning, phases, profiling, run_config
from codemix.train import workdir as workdirs
from codemix.train.budget import steps_for  # noqa: F401  (the one definition; runner uses it too)
from codemix.train.loop import run_loop
from codemix.train.optimizer import make_optimizer as _make_optimizer
from codemix.train.optimizer import make_schedule as _make_schedule
from codemix.train.run_lock import RunLock
from codemix.train.run_setup import set_up

log = logging.getLogger(__name__)


class Preempted(SystemExit):
    """Raised after a SIGTERM/SIGINT-triggered checkpoint was written."""


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
    checkpoint_every_minutes: float | None = None,
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
    profile_steps: tuple[int, int] | None = None,
    make_mesh: Callable = partitioning.make_mesh,
    make_iterator: Callable = make_train_iterator,
    make_schedule: Callable = _make_schedule,
    make_optimizer: Callable = _make_optimizer,
    clock: phases.PhaseClock | None = None,
    allow_config_change: bool = False,
) -> dict:
    """Train (or resume) a run in `workdir`. Returns a summary dict.

    Args:
      workdir: run directory (checkpoints, metrics.jsonl, operative_config.gin).
      train_steps: optimizer steps in this run (macro TRAIN_STEPS).
      token_budget: alternatively, the run's length in tokens (batch rows x
        sequence length per step); steps = ceil(budget / tokens per step).
        Exactly one of train_steps and token_budget must be set. Both the
        budget and the derived steps are written to run_info.json.
      model: decoder config (gin/stages bind @ModelConfig(); None = ModelConfig()).
      seed: parameter-initialisation seed (the data seed is
        make_train_iterator.seed). Deterministic by default.
      grad_accum_steps: microbatches per step; the global batch is unchanged.
      schedule_steps: length of the LR schedule in steps (default train_steps).
      log_every: steps between metrics.jsonl lines (a stop signal is acted on
        at the end of the step it arrived in, whatever this is; loop.py).
      checkpoint_every: steps between checkpoints (one is always written at the end).
      checkpoint_every_minutes: also checkpoint when this many minutes passed
        since the last checkpoint (process 0's clock; None = steps only). Bounds
        the work a hard kill loses where a step count would be hours.
      keep_checkpoints: how many recent checkpoints to keep.
      async_checkpoints: write checkpoints in the background.
      init_from: weights-only start from another run's workdir / step dir /
        imported model (ignored when this workdir already has a checkpoint).
      init_from_step: step of `init_from` to use (default: its latest).
      init_optimizer_from_parent: with init_from, also take the parent's
        optimizer state (cooldowns that carry Adam moments); the step counter
        and schedule still start fresh.
      peak_flops: per-device peak FLOP/s for MFU (default: datasheet, or
        measured f32 matmul peak on CPU, once per process).
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
      profile_steps: (start, count): process 0 writes a jax.profiler trace of
        train steps start+1 .. start+count to
        <workdir>/tensorboard/plugins/profile/<timestamp>/ (TensorBoard's
        profile plugin reads it; codemix/train/profiling.py). Default None: no trace, since
        a trace costs host memory and time. Use start >= 1 to leave the first
        step's compilation out.
      make_mesh: () -> Mesh (gin: @make_mesh).
      make_iterator: () -> the training BatchIterator (gin: @make_train_iterator).
      make_schedule: (total_steps=...) -> LR schedule (gin: @make_schedule).
      make_optimizer: (schedule) -> optax optimizer (gin: @make_optimizer).
      clock: the PhaseClock to charge (the experiment runner passes the run's
        own, which also times its start-up and evaluation); default: a new one.
        Either way the phases are written to run_info.json.
      allow_config_change: resume this workdir's run although the settings
        that decide what it trains differ from those it was trained with
        (run_config.py); the change is recorded in its lineage.json. Without
        it such a resume is refused (RunConfigChanged) before anything is written.
    """
    args = dict(locals())
    own_clock = clock is None
    clock = clock or phases.PhaseClock()
    lock = None
    fresh = not workdirs.exists(workdir)  # made by this call: removed again if it fails before training
    started = False
    quiet = workdirs.QuietDiskFull()
    logging.getLogger("absl").addFilter(quiet)  # Orbax's writer thread logs through absl
    try:
        with clock.phase("startup"):
            profiling.check_profile_steps(profile_steps)  # a bad value fails before anything is written
            identity = run_config.identity(args)
            workdirs.ensure_directory(workdir)
            lock = _lock(workdir)
            run_config.check(workdir, identity, allow_config_change, write=jax.process_index() == 0)
            compile_cache.compilation_cache()
        s = set_up(workdir, args, clock)
        started = True
        step, signum = run_loop(s, workdir, clock, log_every=log_every, checkpoint_every=checkpoint_every,
                                eval_every=eval_every, hooks=hooks, progress=progress,
                                profile_steps=profile_steps,
                                checkpoint_every_minutes=checkpoint_every_minutes)
        snap = phases.record(workdir, clock)
    except Exception as e:
        if workdirs.is_disk_full(e):
            raise workdirs.disk_full(workdir, e, run_config.trained_step(workdir)) from e
        raise
    finally:
        logging.getLogger("absl").removeFilter(quiet)
        if lock is not None:
            lock.release()
        if fresh and not started:  # a bad mixture, gin value or vocabulary: leave no half-made workdir
            workdirs.remove_unstarted(workdir, (run_config.CONFIG_FILE,))
        if own_clock:
            clock.close()
    p = snap["phases"]
    summary = {
        "train_seconds": p["train_steps"],
        "heldout_seconds": p["heldout_eval"],
        "workdir": workdir,
        "step": step,
        "tokens": s.meta["tokens"],
        "params": s.info.total_params,
        "flops_per_token": s.info.flops_per_token,
        "peak_flops_per_device": s.peak,
        "peak_flops_source": s.peak_source,
        "preempted": bool(signum),
        "phases": p,
        "compile_cache": snap["compile_cache"],
    }
    if signum:
        log.warning("stopped at step %d by signal %d; checkpoint written", step, signum)
        raise Preempted(128 + signum)
    return summary


def _lock(workdir: str) -> RunLock:
    """Process 0 locks the workdir; every process learns whether it could."""
    lock = RunLock(workdir)
    refused = None
    if jax.process_index() == 0:
        try:
            lock.acquire()
        except RunLocked as e:
            refused = e
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        locked = bool(multihost_utils.broadcast_one_to_all(np.int32(refused is None)))
        if not locked and refused is None:
            raise RunLocked(f"process 0 found {workdir} in use by another trainer (its log names it).")
    if refused is not None:
        raise refused
    return lock


def configured_args() -> dict:
    """train()'s arguments as the current gin config would give them (the
    run_config.TRAIN_PARAMS, and no model: ModelConfig() is gin's), without training."""
    defaults = {n: p.default for n, p in inspect.signature(train).parameters.items()}
    args = {n: cm_config.query(f"train.{n}", defaults[n]) for n in run_config.TRAIN_PARAMS}
    return {**args, "model": None}
