"""The operating-system side of the code sandbox (codemix/eval/sandbox.py).

What bounds a sandboxed program and how its processes are handled:

  LAUNCHER        the first program inside bwrap: moves the passed pipes to their
                  fds (3 for a report, 4 and 5 for a check's two channels) and
                  closes every other fd above 2, sets hard rlimits (CPU, address
                  space, processes, file size, open files), then execs
                  `python3 -I -S -`.
  seccomp_filter  a classic-BPF program for `bwrap --seccomp` that returns EPERM
                  for ptrace, process_vm_*, System V shared memory, perf, bpf,
                  userfaultfd, keyrings and io_uring, and for every non-native ABI.
  MemoryCgroups   one cgroup-v1 memory group per worker slot, where writable.
  drain, child_started, kill_group
                  reading the report and bwrap status fds, telling from bwrap's
                  --json-status-fd whether the program started, killing a
                  sandbox's whole process group.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import struct
import subprocess
import threading
from pathlib import Path

# Runs first inside the sandbox: moves the passed pipes to their fds (`moves`:
# {fd in the sandbox: fd as passed}), closes every other fd above 2 (so no
# pipe of bwrap's reaches the program), sets hard limits, then the program
# replaces it.
LAUNCHER = """\
import fcntl, os, resource, sys
moves = {moves}
held = {{target: fcntl.fcntl(source, fcntl.F_DUPFD, 10) for target, source in moves.items()}}
for source in set(moves.values()):
    os.close(source)
for target, fd in held.items():
    os.dup2(fd, target)
    os.close(fd)
low = 3
for target in sorted(held) + [1 << 16]:
    os.closerange(low, target)
    low = target + 1
for k, v in (("RLIMIT_CPU", {cpu}), ("RLIMIT_AS", {mem}), ("RLIMIT_NPROC", {nproc}),
             ("RLIMIT_FSIZE", {fsize}), ("RLIMIT_NOFILE", {nofile}), ("RLIMIT_CORE", 0),
             ("RLIMIT_MSGQUEUE", 0), ("RLIMIT_MEMLOCK", 0)):
    resource.setrlimit(getattr(resource, k), (v, v))
os.execv(sys.executable, [sys.executable, "-I", "-S", "-"])
"""


# seccomp: syscalls refused with EPERM, per architecture (audit arch, numbers).
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_DENIED_SYSCALLS = {
    # ptrace, process_vm_readv, process_vm_writev, shmget, shmat, perf_event_open,
    # bpf, userfaultfd, add_key, request_key, keyctl, io_uring_setup
    "x86_64": (101, 310, 311, 29, 30, 298, 321, 323, 248, 249, 250, 425),
    "aarch64": (117, 270, 271, 194, 196, 241, 280, 282, 217, 218, 219, 425),
}


def seccomp_filter(machine: str | None = None) -> bytes | None:
    """A classic-BPF seccomp program (bwrap --seccomp) that refuses the calls in
    `_DENIED_SYSCALLS` and every syscall of a non-native ABI; None when the
    architecture is not in the table."""
    machine = machine or platform.machine()
    if machine not in _AUDIT_ARCH:
        return None
    ld_abs, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, eperm = 0x7FFF0000, 0x00050000 | 1
    denied = _DENIED_SYSCALLS[machine]
    checks = [(jge, 0x40000000)] if machine == "x86_64" else []  # x32 ABI
    checks += [(jeq, nr) for nr in denied]
    # layout: ld arch; jeq arch (skip 1) ; ret eperm; ld nr; checks...; ret allow; ret eperm
    prog = [(ld_abs, 0, 0, 4), (jeq, 1, 0, _AUDIT_ARCH[machine]), (ret, 0, 0, eperm), (ld_abs, 0, 0, 0)]
    for i, (code, k) in enumerate(checks):
        prog.append((code, len(checks) - i, 0, k))  # jump to the final `ret eperm`
    prog += [(ret, 0, 0, allow), (ret, 0, 0, eperm)]
    return b"".join(struct.pack("=HBBI", *ins) for ins in prog)


class MemoryCgroups:
    """One cgroup-v1 memory group per worker slot under this process's own,
    when that is writable; removed on close. (Processes need no cgroup:
    RLIMIT_NPROC counts per user namespace, so it bounds the sandbox alone.)"""

    def __init__(self, workers: int, memory_bytes: int, uids: list[int] | None):
        self.dirs: dict[int, list[Path]] = {}
        own = {}
        try:
            for line in Path("/proc/self/cgroup").read_text().splitlines():
                _, controllers, path = line.split(":", 2)
                for c in controllers.split(","):
                    own[c] = path
        except OSError:
            return
        tag = f"codemix-sandbox-{os.getpid()}-{id(self):x}"
        if "memory" in own:  # groups left by killed processes (empty once those are gone)
            parent = Path("/sys/fs/cgroup/memory") / own["memory"].lstrip("/")
            for stale in parent.glob("codemix-sandbox-*"):
                pid = stale.name.split("-")[2]
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    with contextlib.suppress(OSError):
                        stale.rmdir()
        for slot in range(workers):
            made = []
            try:
                mem = Path("/sys/fs/cgroup/memory") / own["memory"].lstrip("/") / f"{tag}-{slot}"
                mem.mkdir()
                made.append(mem)
                (mem / "memory.limit_in_bytes").write_text(str(memory_bytes))
                if (mem / "memory.memsw.limit_in_bytes").exists():
                    (mem / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
                if uids:  # the slot's uid joins its group itself (see Sandbox._run_once)
                    os.chown(mem / "cgroup.procs", uids[slot], uids[slot])
            except (OSError, KeyError):
                for d in reversed(made):
                    rmdir_when_empty(d)
                self.close()
                return
            self.dirs[slot] = made

    def procs_files(self, slot: int) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs.get(slot, [])]

    def close(self) -> None:
        for made in self.dirs.values():
            for d in reversed(made):
                rmdir_when_empty(d)
        self.dirs = {}


def rmdir_when_empty(path: Path) -> None:
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            threading.Event().wait(0.02)  # the sandbox's last processes are still exiting


def drain(fd: int, into: bytearray, limit: int) -> None:
    with os.fdopen(fd, "rb", buffering=0) as f:
        while chunk := f.read(1 << 16):
            if len(into) < limit:
                into += chunk[: limit - len(into)]


def child_started(status: bytes) -> bool:
    """bwrap's --json-status-fd stream: one JSON document per line; the first
    has "child-pid" once the sandboxed program has been started."""
    for line in status.splitlines():
        try:
            if "child-pid" in json.loads(line):
                return True
        except (ValueError, TypeError):
            continue
    return False


class Stopper:
    """Stops a sandbox from another thread, whether it has started yet or not."""

    def __init__(self):
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self.stopped = False

    def attach(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._proc = proc
            stopped = self.stopped
        if stopped:
            signal_group(proc)

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            proc = self._proc
        if proc is not None:
            signal_group(proc)


def signal_group(proc: subprocess.Popen) -> None:
    """SIGKILL to the sandbox's process group (its owner thread reaps it)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, 9)


def read_tail(f, size: int = 2000) -> str:
    """The last `size` bytes of a file (the program's stderr may be 16 MiB)."""
    f.seek(0, os.SEEK_END)
    f.seek(max(0, f.tell() - size))
    return f.read().decode("utf-8", "replace")


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
