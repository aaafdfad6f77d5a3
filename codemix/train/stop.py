"""Every step, one answer on every process: stop now? checkpoint now?

A stop signal (SIGTERM from a scheduler that preempts or requeues the job,
SIGINT from a user) or a time-based checkpoint must act at the same step on
every process, or the checkpoint's collectives would hang. The train loop asks
after each step's dispatch, so a signal costs at most the step it arrived in:

- One process: the local flag and clock are the answer; nothing is exchanged.
- Several processes: a process that wants an action writes it into the
  jax.distributed key-value store under this step's key, then every process
  waits at this step's barrier and reads the step's keys. A process sets a key
  of step n only before its barrier n, so after barrier n every process reads
  the same keys and takes the same decision. The cost is two small RPCs to the
  coordinator per step, on the host and without touching the devices (no
  device sync: steps keep running ahead asynchronously). The loop asks right
  after dispatching a step and before anything that waits for a device, so no
  process can wait in the barrier for a process that waits for its device.

Only process 0's clock decides a time-based checkpoint (the clocks of
different hosts would disagree by a step). JAX's own preemption service (its
C++ SIGTERM notifier) is switched off by init_distributed, because Python's
handler below replaces it for the whole train loop and a SIGTERM it swallowed
before the loop would be lost.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import signal
import time

import jax

from codemix.errors import ConfigError

log = logging.getLogger(__name__)

STOP, CHECKPOINT = 1, 2
# A barrier waits for the slowest process to finish its step's host work (process 0
# writes metrics and held-out files, the first step compiles); a dead process is
# caught sooner by jax.distributed's own heartbeat.
BARRIER_TIMEOUT_S = 6 * 3600
_loops = itertools.count()  # one experiment process runs many loops: barrier names never repeat


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


def _client():
    from jax._src import distributed

    return distributed.global_state.client


class StepAgreement:
    """ask(step, stop) -> STOP|CHECKPOINT bits, equal on every process (module docstring)."""

    def __init__(self, checkpoint_every_minutes: float | None = None):
        if checkpoint_every_minutes is not None and checkpoint_every_minutes <= 0:
            raise ConfigError(f"train.checkpoint_every_minutes = {checkpoint_every_minutes}; use a positive "
                             f"number of minutes, or None for step-based checkpoints only.")
        self.every_s = None if checkpoint_every_minutes is None else 60.0 * checkpoint_every_minutes
        self.last_save = time.monotonic()
        self.prefix = f"codemix/steps{next(_loops)}"
        self.client = _client() if jax.process_count() > 1 else None
        self.seconds = 0.0  # time spent agreeing, for the log
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
        if self.client is None:
            return bits
        start = time.perf_counter()
        key = f"{self.prefix}/{step}"
        if bits:
            self.client.key_value_set(f"{key}/{jax.process_index()}", str(bits))
        self.client.wait_at_barrier(key, BARRIER_TIMEOUT_S * 1000)
        agreed = 0
        for _, value in self.client.key_value_dir_get(f"{key}/"):
            agreed |= int(value)
        self.seconds += time.perf_counter() - start
        self.asked += 1
        return agreed
