"""A `jax.profiler` trace of chosen train steps (`train.profile_steps`).

`profile_steps = (start, count)` traces the train steps numbered start+1 ..
start+count, the way the loop counts them (step N is the one after which the
state's step counter is N): the trace starts just before step start+1 is
dispatched and stops once step start+count has finished on the device (the
loop blocks on that step's state first, so its device work is in the trace).
Choose start >= 1 to leave the first step's compilation out. A run resumed past
the window traces nothing; one resumed inside it traces the rest of the window.

Only process 0 traces (one host's view is what a profile is read for; the
others run the same program). The trace goes to
`<workdir>/tensorboard/plugins/profile/<timestamp>/<host>.xplane.pb`, the
layout of TensorBoard's profile plugin, beside the run's scalars:
`tensorboard --logdir <workdir>/tensorboard` (with `tensorboard-plugin-profile`)
or XProf opens it. It is first written to a local
temporary folder and then copied with `etils.epath`, so a `gs://` workdir works
whatever file systems the profiler itself can write to.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence

import jax
from etils import epath

log = logging.getLogger(__name__)

PLUGIN_DIR = ("plugins", "profile")
LOGDIR = "tensorboard"  # the run's TensorBoard folder (metrics.py writes its scalars there)


def check_profile_steps(profile_steps: Sequence[int] | None) -> tuple[int, int] | None:
    """`(start, count)` as ints, or None; ValueError naming the setting otherwise."""
    if profile_steps is None:
        return None
    try:
        start, count = (int(v) for v in profile_steps)
    except (TypeError, ValueError):
        raise ValueError(
            f"train.profile_steps must be (start, count), two integers: the trace covers steps "
            f"start+1 .. start+count; got {profile_steps!r}. E.g. train.profile_steps = (10, 5)."
        ) from None
    if start < 0 or count < 1:
        raise ValueError(
            f"train.profile_steps = {tuple(profile_steps)!r}: start must be >= 0 and count >= 1 "
            f"(the trace covers steps start+1 .. start+count). E.g. train.profile_steps = (10, 5)."
        )
    return start, count


class StepProfiler:
    """Starts and stops the trace around the configured steps (process 0 only).

    The loop calls `before(step)` with the number of steps done before it
    dispatches the next one, and `after(step, state)` once `step` is done."""

    def __init__(self, workdir: str, profile_steps: Sequence[int] | None):
        window = check_profile_steps(profile_steps)
        self.workdir = workdir
        self.window = window if jax.process_index() == 0 else None
        self._local: str | None = None

    @property
    def active(self) -> bool:
        return self._local is not None

    def before(self, step: int) -> None:
        if self.window is None or self.active:
            return
        start, count = self.window
        if start <= step < start + count:
            self._local = tempfile.mkdtemp(prefix="codemix-profile-")
            jax.profiler.start_trace(self._local)
            log.info("profiler: tracing steps %d..%d", step + 1, start + count)

    def after(self, step: int, state) -> None:
        if self.active and step >= sum(self.window):
            self.stop(state)

    def stop(self, state=None) -> None:
        """End the trace (at the window's end, or when the loop ends inside it)
        and copy it into the workdir."""
        if not self.active:
            return
        if state is not None:
            jax.block_until_ready(state)
        local, self._local = self._local, None
        try:
            jax.profiler.stop_trace()
            target = epath.Path(self.workdir).joinpath(LOGDIR, *PLUGIN_DIR)
            copied = []
            for f in epath.Path(local).joinpath(*PLUGIN_DIR).glob("*/*"):
                dest = target / f.parent.name / f.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                f.copy(dest, overwrite=True)
                copied.append(dest)
            log.info("profiler: wrote %s", ", ".join(str(p) for p in copied) or "nothing")
        finally:
            shutil.rmtree(local, ignore_errors=True)
