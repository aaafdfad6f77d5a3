"""The step loop: batches in, metrics lines, held-out evaluations and
checkpoints out, and a clean stop on SIGTERM/SIGINT.

Stop signals and time-based checkpoints. A signal only sets a flag. After
dispatching each step, every process asks whether any process wants to stop
or (process 0's clock, `checkpoint_every_minutes`) to checkpoint, and all of
them get the same answer at the same step (stop.py: on several processes one
tiny all-gather per step). A signal that arrives during
step k leads to a checkpoint of step k (or k+1, when it arrived after step
k's question) on every host, then the run stops. A second signal gives up at
once.

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

import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence

import jax
from etils import epath

from codemix.train import checkpointing
from codemix.train.metrics import MetricWriter
from codemix.train.phases import PhaseClock
from codemix.train.profiling import StepProfiler
from codemix.train.record import StepMetrics
from codemix.train.run_setup import RunSetup
from codemix.train.stop import CHECKPOINT, STOP, StepAgreement, stop_on_signals

log = logging.getLogger(__name__)


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
        from codemix import storage

        folder = storage.path(workdir) / "heldout"
        folder.mkdir(parents=True, exist_ok=True)
        doc = {"step": int(step), "seconds": seconds,
               "families": {f: r.to_json() for f, r in results.items()}}
        storage.write_text(folder / f"step_{int(step)}.json", json.dumps(doc))
    return {**flat_metrics(results), "val/seconds": seconds}


def run_loop(s: RunSetup, workdir: str, clock: PhaseClock, *, log_every: int, checkpoint_every: int,
             eval_every: int | None, hooks: Sequence[Callable], progress: bool | None,
             profile_steps: Sequence[int] | None = None,
             checkpoint_every_minutes: float | None = None) -> tuple[int, int]:
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

        bar = tqdm(total=train_steps, initial=s.start, desc=epath.Path(workdir).name, unit="step")
    stop: dict = {}
    agree = StepAgreement(checkpoint_every_minutes)
    step = s.start
    with clock.phase("data_setup"):  # the input pipeline's first batch fills its buffers
        local = next(iterator) if step < train_steps else None
    last_time, last_step, interval_eval = time.perf_counter(), step, 0.0
    last_compile = clock.compile_seconds()
    with stop_on_signals(stop), clock.phase("train_steps"):
        while step < train_steps:
            profiler.before(step)
            stop["step"] = step + 1  # the step a signal arrives in (the handler logs it)
            state, step_metrics = s.step_fn(state, global_batch(local, batch_sh))
            step += 1
            wanted = agree.ask(step, bool(stop.get("stop")))
            stopping, timed = bool(wanted & STOP), bool(wanted & CHECKPOINT)
            if stopping and not stop.get("stop"):
                stop["stop"] = signal.SIGTERM  # another process got the signal
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
            if step % log_every == 0 or step == train_steps or stopping:  # a stop logs the steps since the last line
                # Steps run ahead of the host: wait for this one, so the interval holds its steps'
                # execution (the line reads its values next anyway) and not only their dispatch.
                jax.block_until_ready(step_metrics)
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
            if stopping or timed or step == train_steps or step % checkpoint_every == 0:
                jax.block_until_ready(state)
                with clock.phase("checkpoint_write"):
                    if s.ckpt.save(step, state, iterator, s.meta, force=stopping or timed or step == train_steps):
                        agree.saved()
                if stopping or step == train_steps:
                    break
            local = next(iterator)
    profiler.stop(state)  # the run ended inside the window
    if agree.asked:
        log.info("stop/checkpoint question: %.2f ms per step over %d steps (the wait for each step's end "
                 "included)", 1e3 * agree.seconds / agree.asked, agree.asked)
    with clock.phase("checkpoint_wait"):
        s.ckpt.close()
    writer.close()
    if bar is not None:
        bar.close()
    s.state = state
    return step, int(stop.get("stop") or 0)
