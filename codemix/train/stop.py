"""Every step, one answer on every process: stop now? checkpoint now?

A stop signal (SIGTERM from a scheduler that preempts or requeues the job,
SIGINT from a user) or a time-based checkpoint must act at the same step on
every process, or the checkpoint's collectives would hang. The train loop asks
after each step's dispatch, so a signal costs at most the step it arrived in:

- One process: the local flag and clock are the answer; nothing is exchanged.
- Several processes: each process's wish (a bit mask) goes into one small
  all-gather (`multihost_utils.process_allgather`), the same collective on
  every process at every step, launched after the step, so every process
  reads the same masks and takes the same decision. Its cost is one tiny
  collective and one host wait for the step per step (the host no longer
  dispatches the next step while the current one runs; its data and
  dispatch time, milliseconds, against steps of seconds at paper scale).
  A host-side barrier through the jax.distributed key-value store was tried
  first and deadlocked on CPU: a process blocked in the runtime's Execute
  while the other waited at the barrier; a collective keeps the stop
  question in the devices' own order.

Only process 0's clock decides a time-based checkpoint (the clocks of
different hosts would disagree by a step). JAX's own preemption service (its
C++ SIGTERM notifier) is switched off by init_distributed, because Python's
handler below replaces it for the whole train loop and a SIGTERM it swallowed
before the loop would be lost.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import time

import jax
import numpy as np

from codemix.errors import ConfigError

log = logging.getLogger(__name__)

STOP, CHECKPOINT = 1, 2


@contextlib.contextmanager
def stop_on_signals(flag: dict):
    """SIGTERM/SIGINT set flag['stop'] to the signal number; a second signal gives up at once."""
    def handler(signum, frame):
        if flag.get("stop"):
            raise KeyboardInterrupt
        log.warning("signal %d during step %s: will checkpoint and stop at the end of this step", signum,
                    flag.get("step"))
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
            signal.signal(sig, h if h is not None else signal.SIG_DFL)


class StepAgreement:
    """ask(step, stop) -> STOP|CHECKPOINT bits, equal on every process (module docstring)."""

    def __init__(self, checkpoint_every_minutes: float | None = None):
        if checkpoint_every_minutes is not None and checkpoint_every_minutes <= 0:
            raise ConfigError(f"train.checkpoint_every_minutes = {checkpoint_every_minutes}; use a positive "
                             f"number of minutes, or None for step-based checkpoints only.")
        self.every_s = None if checkpoint_every_minutes is None else 60.0 * checkpoint_every_minutes
        self.last_save = time.monotonic()
        self.several = jax.process_count() > 1
        self.seconds = 0.0  # time spent agreeing (waiting for the step included), for the log
        self.asked = 0

    def saved(self) -> None:
        """A checkpoint was written now: the time-based interval starts again."""
        self.last_save = time.monotonic()

    def _wanted(self, stop: bool) -> int:
        bits = STOP if stop else 0
        if (self.every_s is not None and jax.process_index() == 0
                and time.monotonic() - self.last_save >= self.every_s):
            bits |= CHECKPOINT
        return bits

    def ask(self, step: int, stop: bool) -> int:
        bits = self._wanted(stop)
        if not self.several:
            return bits
        from jax.experimental import multihost_utils

        start = time.perf_counter()
        agreed = int(np.bitwise_or.reduce(np.asarray(multihost_utils.process_allgather(np.int32(bits))).ravel()))
        self.seconds += time.perf_counter() - start
        self.asked += 1
        return agreed
