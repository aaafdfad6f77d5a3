"""Run untrusted generated Python in a bubblewrap sandbox.

Each program runs as `python3 -I -` (the source on stdin) inside
`bwrap --unshare-all --ro-bind / / --tmpfs /tmp --dev /dev --proc /proc
--die-with-parent --new-session`:

  network    --unshare-all gives an empty network namespace (no interfaces)
  files      the whole filesystem is read-only; /tmp is a private tmpfs
  processes  own PID namespace; when the sandbox's init dies, the kernel kills
             every process left in it (fork bombs included)
  limits     a prelude sets hard rlimits before the program runs: CPU seconds,
             address space (memory), process count, written-file size
  time       a wall-clock timeout kills the sandbox from outside

RLIMIT_NPROC does not bind root, so when this process runs as root each
sandbox runs as an otherwise unused uid (`base_uid + worker slot`), which also
keeps one sandbox's processes from counting against another's. Such a uid may
not be able to read the current interpreter (e.g. under /root), so the first
use probes candidate interpreters and keeps the first that runs in the sandbox.

Every outcome is a `ExecResult` (passed / failed / timeout / sandbox_error);
nothing raises for a misbehaving program. Without bwrap `Sandbox` refuses to
start with a message that says how to install it; running without a sandbox
needs `unsafe_unsandboxed=True` (CLI: --unsafe_unsandboxed_execution) and logs
a loud warning.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "bubblewrap (bwrap) is needed to execute generated code safely: install it with "
    "`apt-get install bubblewrap` (Debian/Ubuntu). To run generated code WITHOUT a sandbox "
    "(only on a throwaway machine), pass --unsafe_unsandboxed_execution."
)

_PRELUDE = """\
import resource as _r, sys as _s
for _k, _v in (("RLIMIT_CPU", {cpu}), ("RLIMIT_AS", {mem}), ("RLIMIT_NPROC", {nproc}),
               ("RLIMIT_FSIZE", {fsize}), ("RLIMIT_CORE", 0)):
    try:
        _r.setrlimit(getattr(_r, _k), (_v, _v))
    except (ValueError, OSError) as _e:
        print("sandbox: could not set", _k, _e, file=_s.stderr)
del _r, _s, _k, _v
"""


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or does not work on this machine."""


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """status: "passed" (exit 0), "failed" (non-zero exit, e.g. an assertion,
    MemoryError or a killed process), "timeout" (wall clock) or
    "sandbox_error" (the sandbox itself could not start)."""

    status: str
    returncode: int | None
    stderr_tail: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class Sandbox:
    """Executes Python programs, at most `workers` at a time.

    Args:
      timeout_s: wall-clock limit per program (seconds).
      cpu_s: CPU-time limit per program (seconds).
      memory_mb: address-space limit per process (MiB).
      max_processes: process limit (per sandbox uid when running as root).
      workers: programs run in parallel.
      unsafe_unsandboxed: run without bubblewrap (rlimits and timeout only).
      base_uid: first uid used when running as root.
    """

    def __init__(self, timeout_s: float = 10.0, cpu_s: int = 10, memory_mb: int = 1024,
                 max_processes: int = 32, workers: int = 2, unsafe_unsandboxed: bool = False,
                 base_uid: int = 61000):
        self.timeout_s = timeout_s
        self.cpu_s = cpu_s
        self.memory_mb = memory_mb
        self.max_processes = max_processes
        self.workers = max(1, workers)
        self.unsafe = unsafe_unsandboxed
        self.base_uid = base_uid
        self._slots = list(range(self.workers))
        self._lock = threading.Lock()
        self._python: str | None = None
        if self.unsafe:
            log.warning("!!! UNSANDBOXED EXECUTION: generated code runs directly on this machine "
                        "with only rlimits and a timeout; it can read, write and reach the network. !!!")
            self._python = sys.executable
        else:
            self.bwrap = shutil.which("bwrap")
            if self.bwrap is None:
                raise SandboxUnavailable(INSTALL_HINT)
            self._python = self._probe_python()

    def _argv(self, python: str) -> list[str]:
        if self.unsafe:
            return [python, "-I", "-"]
        return [self.bwrap, "--unshare-all", "--die-with-parent", "--new-session",
                "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
                "--chdir", "/tmp", "--setenv", "HOME", "/tmp", "--", python, "-I", "-"]

    def _probe_python(self) -> str:
        candidates = [sys.executable, "/usr/bin/python3", shutil.which("python3") or ""]
        errors = []
        for python in dict.fromkeys(c for c in candidates if c):
            result = self._run_once(python, "print('ok')", slot=0)
            if result.passed:
                return python
            errors.append(f"{python}: {result.status} {result.stderr_tail.strip()[-300:]}")
        raise SandboxUnavailable(
            "bubblewrap is installed but no Python interpreter runs inside the sandbox:\n  "
            + "\n  ".join(errors)
            + "\n(If user namespaces are disabled, enable them: sysctl kernel.unprivileged_userns_clone=1.) "
            + INSTALL_HINT
        )

    def _nproc_limit(self, as_other_uid: bool) -> int:
        if as_other_uid:
            return self.max_processes
        # Not root: RLIMIT_NPROC counts all of this user's processes.
        uid = os.getuid()
        owned = 0
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    owned += os.stat(f"/proc/{pid}").st_uid == uid
                except OSError:
                    pass
        return owned + self.max_processes

    def _run_once(self, python: str, program: str, slot: int) -> ExecResult:
        as_other_uid = os.geteuid() == 0 and not self.unsafe
        prelude = _PRELUDE.format(cpu=int(self.cpu_s), mem=int(self.memory_mb) << 20,
                                  nproc=self._nproc_limit(as_other_uid), fsize=16 << 20)
        kwargs = {}
        if as_other_uid:
            uid = self.base_uid + slot
            kwargs = {"user": uid, "group": uid, "extra_groups": []}
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(
                    self._argv(python), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                    stderr=err, start_new_session=True, cwd=tempfile.gettempdir(), **kwargs,
                )
            except OSError as e:
                return ExecResult("sandbox_error", None, f"could not start the sandbox: {e}")
            try:
                proc.communicate((prelude + program).encode("utf-8"), timeout=self.timeout_s)
                status = "passed" if proc.returncode == 0 else "failed"
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                status = "timeout"
            except BrokenPipeError:
                proc.wait(timeout=self.timeout_s)
                status = "failed"
            err.seek(0)
            tail = err.read()[-2000:].decode("utf-8", "replace")
        if status == "failed" and tail.startswith("bwrap:"):
            status = "sandbox_error"
        return ExecResult(status, proc.returncode, tail)

    def run(self, program: str) -> ExecResult:
        """Execute one program; never raises for anything the program does."""
        with self._lock:
            slot = self._slots.pop() if self._slots else 0
        try:
            return self._run_once(self._python, program, slot)
        finally:
            with self._lock:
                self._slots.append(slot)

    def run_many(self, programs: Sequence[str], progress: bool = False) -> list[ExecResult]:
        """Execute programs in parallel (`workers` at a time), results in order."""
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            futures = [pool.submit(self.run, p) for p in programs]
            it = futures
            if progress:
                from tqdm.auto import tqdm

                it = tqdm(futures, desc="execute", unit="program", leave=False)
            return [f.result() for f in it]


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
