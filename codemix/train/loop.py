"""The step loop: batches in, metrics lines, held-out evaluations and
checkpoints out, and a clean stop on SIGTERM/SIGINT.

Stop signals. A signal only sets a flag; the loop acts on it at the next
sync point -- a log step, a checkpoint step or the last step -- where every
process asks whether any process got one (one small `process_allgather`,
only when there are several processes) and, if so, all of them save a
checkpoint at that same step and stop. Log and checkpoint steps are the same
on every process, so they agree on where to stop without a collective on
every step; a stop waits at most `log_every` steps. A second signal gives up
at once.

Time. Steps run asynchronously: before a held-out evaluation or a checkpoint
the loop waits for the queued steps, so that their time is charged to
`train_steps` and not to the evaluation or the write (phases.py). A metrics
line's throughput (tokens_per_sec, step_time, mfu) counts train-step time
only: the held-out evaluations and every compilation in its interval (the
step's own on its first call, which the PhaseClock hears of through
jax.monitoring) are taken out, so the first line is not slowed by compiling.

Profiling. `profile_steps` traces the chosen steps on process 0 (profiling.py).
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from codemix.train import checkpointing
from codemix.train.metrics import MetricWriter
from codemix.train.phases import PhaseClock
from codemix.train.profiling import StepProfiler
from codemix.train.record import StepMetrics
from codemix.train.run_setup import RunSetup

log = logging.getLogger(__name__)


@contextlib.contextmanager
def stop_on_signals(flag: dict):
    def handler(signum, frame):
        if flag.get("stop"):
            raise KeyboardInterrupt  # second signal: give up at once
        log.warning("signal %d: will checkpoint and stop at the next log or checkpoint step", signum)
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


def any_process(flag: bool) -> bool:
    """True if `flag` is set on any process (call it on every process at the same step)."""
    if jax.process_count() == 1:
        return flag
    return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


def global_batch(local: dict, shardings: dict) -> dict:
    out = {}
    for k, v in local.items():
        shape = (v.shape[0] * jax.process_count(),) + v.shape[1:]
        out[k] = jax.make_array_from_process_local_data(shardings[k], v, shape)
    return out


def _evaluate_heldout(evaluator, params, step: int, workdir: str) -> dict:
    import json

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


def run_loop(s: RunSetup, workdir: str, clock: PhaseClock, *, log_every: int, checkpoint_every: int,
             eval_every: int | None, hooks: Sequence[Callable], progress: bool | None,
             profile_steps: Sequence[int] | None = None) -> tuple[int, int]:
    """Step from `s.start` to `s.train_steps`. Returns (last step, stop signal or 0).
    Checkpoints the last step (or the step a signal stopped at) and waits for it."""
    profiler = StepProfiler(workdir, profile_steps)
    train_steps, iterator, state = s.train_steps, s.iterator, s.state
    batch_sh = s.layout.batch_shardings
    metrics = StepMetrics(iterator.source_names, s.meta, s.tokens_per_step, s.info.flops_per_token,
                          s.peak * jax.device_count())
    writer = MetricWriter(workdir)
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show and jax.process_index() == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=train_steps, initial=s.start, desc=os.path.basename(workdir.rstrip("/")), unit="step")
    stop: dict = {}
    step = s.start
    with clock.phase("data_setup"):  # the input pipeline's first batch fills its buffers
        local = next(iterator) if step < train_steps else None
    last_time, last_step, interval_eval = time.perf_counter(), step, 0.0
    last_compile = clock.compile_seconds()
    with stop_on_signals(stop), clock.phase("train_steps"):
        while step < train_steps:
            profiler.before(step)
            state, step_metrics = s.step_fn(state, global_batch(local, batch_sh))
            step += 1
            profiler.after(step, state)
            metrics.add(step_metrics)
            for hook in hooks:
                if step % getattr(hook, "every", 1) == 0:
                    with clock.phase("benchmark_eval"):
                        metrics.extra.update(hook(step, state, s.cfg, workdir) or {})
            if s.heldout is not None and (step == train_steps or (eval_every and step % eval_every == 0)):
                jax.block_until_ready(state["params"])
                t_eval, c_eval = time.perf_counter(), clock.compile_seconds()
                with clock.phase("heldout_eval"):
                    metrics.extra.update(_evaluate_heldout(s.heldout, state["params"], step, workdir))
                # its compilation is taken out below, with the interval's other compiles
                interval_eval += (time.perf_counter() - t_eval) - (clock.compile_seconds() - c_eval)
            if step % log_every == 0 or step == train_steps:
                now, compiled = time.perf_counter(), clock.compile_seconds()
                # Throughput counts train steps only, not the held-out evaluation or compiling.
                line, got = metrics.record(step, step - last_step,
                                           now - last_time - interval_eval - (compiled - last_compile))
                interval_eval, last_compile = 0.0, compiled
                writer.write(line)
                checkpointing.stop_if_non_finite(got, last_step + 1, s.ckpt)  # NonFiniteLoss, nothing saved
                last_time, last_step = now, step
                if bar is not None:
                    bar.set_postfix(loss=f"{line['loss']:.3f}", tok_s=f"{line['tokens_per_sec']:.0f}")
            if bar is not None:
                bar.update(1)
            at_sync = step % log_every == 0 or step % checkpoint_every == 0 or step == train_steps
            stopping = at_sync and any_process(bool(stop.get("stop")))
            if stopping or step == train_steps or step % checkpoint_every == 0:
                jax.block_until_ready(state)
                with clock.phase("checkpoint_write"):
                    s.ckpt.save(step, state, iterator, s.meta, force=stopping or step == train_steps)
                if stopping or step == train_steps:
                    break
            local = next(iterator)
    profiler.stop(state)  # the run ended inside the window
    with clock.phase("checkpoint_wait"):
        s.ckpt.close()
    writer.close()
    if bar is not None:
        bar.close()
    s.state = state
    return step, int(stop.get("stop") or 0)
