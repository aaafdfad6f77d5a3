"""One trainer per run workdir: a lock file naming its owner, kept alive by a heartbeat.

`<workdir>/run.lock` is created with O_CREAT|O_EXCL, so of two trainers that
start together exactly one gets it; it holds the owner (host, pid, job id
from SLURM_JOB_ID or CODEMIX_JOB_ID, start time) and a heartbeat time that a
background thread rewrites every `heartbeat_s` seconds (atomically: a
temporary file renamed over it, so the file never disappears). A second
trainer is refused with RunLocked, naming the owner.

A lock is stale, and is taken over with a warning, when its owner cannot be
running any more: on the same host, its pid is gone; on another host, its
heartbeat is older than `stale_s`. A lock whose owner is alive but hung is not
stale: the message says how to remove it by hand.

On gs:// the O_EXCL create is an upload with the precondition
`if_generation_match=0` (google-cloud-storage; `create_exclusive` is the one
place that knows how), so of two jobs that start one run together exactly one
gets it. Without that library a gs:// workdir is not locked (a warning says so).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid

from etils import epath

from codemix.errors import RunLocked

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"
HEARTBEAT_S = 30.0  # seconds between heartbeats
STALE_S = 300.0  # a lock of another host whose heartbeat is older is taken over


def create_exclusive(path: epath.Path, text: str) -> bool | None:
    """Create `path` holding `text` if it does not exist: True if created, False if it
    existed, None where this storage offers no exclusive create here."""
    name = os.fspath(path)
    if "://" not in name:
        try:
            fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return True
    if not name.startswith("gs://"):
        return None
    try:
        from google.api_core.exceptions import PreconditionFailed
        from google.cloud import storage
    except ImportError:
        return None
    bucket, _, key = name[len("gs://"):].partition("/")
    try:
        storage.Client().bucket(bucket).blob(key).upload_from_string(text, if_generation_match=0)
    except PreconditionFailed:
        return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _job_id() -> str | None:
    return os.environ.get("CODEMIX_JOB_ID") or os.environ.get("SLURM_JOB_ID")


def describe(owner: dict, now: float | None = None) -> str:
    """'host h, pid 123 (job 7), started 2026-01-01T10:00:00, heartbeat 4 s ago'."""
    now = time.time() if now is None else now
    job = f" (job {owner['job_id']})" if owner.get("job_id") else ""
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(owner.get("started", 0)))
    beat = now - float(owner.get("heartbeat", 0))
    return f"host {owner.get('host')}, pid {owner.get('pid')}{job}, started {started}, heartbeat {beat:.0f} s ago"


class RunLock:
    """The lock of one workdir (see the module docstring). Use `with RunLock(d):`
    or `acquire()` / `release()`."""

    def __init__(self, directory, heartbeat_s: float = HEARTBEAT_S, stale_s: float = STALE_S):
        self.directory = epath.Path(directory)
        self.path = self.directory / LOCK_NAME
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_s
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "job_id": _job_id(),
                      "started": time.time(), "heartbeat": time.time(), "token": uuid.uuid4().hex}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    def acquire(self) -> RunLock:
        """Take the lock; RunLocked (naming the owner) if a live trainer holds it."""
        for _ in range(3):  # a stale lock taken over, then a race lost: try again
            created = create_exclusive(self.path, json.dumps(self.owner))
            if created is None:
                log.warning("%s: no exclusive create on this storage here (gs:// needs google-cloud-storage): "
                            "it is not locked against a second trainer.", self.directory)
                return self
            if not created:
                owner = self._read()
                if owner is None or not self._stale(owner):
                    raise RunLocked(self._refusal(owner)) from None
                log.warning("%s: taking over the lock of a trainer that is no longer running (%s).",
                            self.directory, describe(owner))
                try:
                    self.path.rename(epath.Path(f"{self.path}.stale"))
                except FileNotFoundError:
                    pass  # another starter took it over first; the next exclusive create decides
                continue
            epath.Path(f"{self.path}.stale").unlink(missing_ok=True)  # a taken-over lock, kept only until now
            self.held = True
            self._thread = threading.Thread(target=self._beat, name="codemix-run-lock", daemon=True)
            self._thread.start()
            return self
        raise RunLocked(self._refusal(self._read()))

    def _read(self) -> dict | None:
        """The owner record; None while another starter is still writing it."""
        try:
            owner = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return owner if isinstance(owner, dict) else None

    def _stale(self, owner: dict) -> bool:
        if owner.get("host") == self.owner["host"]:
            return not _pid_alive(int(owner.get("pid", -1)))
        return time.time() - float(owner.get("heartbeat", 0)) > self.stale_s

    def _refusal(self, owner: dict | None) -> str:
        who = describe(owner) if owner else "an owner still writing its record"
        pid = f"kill {owner.get('pid')} on {owner.get('host')}" if owner else "stop it"
        return (f"workdir {self.directory} is in use by another trainer ({who}). Two trainers on one run "
                f"would write every metrics line twice and race on its checkpoints. Wait for it to finish, or "
                f"stop it ({pid}) and rerun: this run resumes from its last checkpoint. If that trainer is "
                f"gone but its lock stayed (another host that stopped sending heartbeats less than "
                f"{self.stale_s:.0f} s ago), delete {self.path}.")

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                current = self._read()
                if current is None or current.get("token") != self.owner["token"]:
                    log.error("%s: the lock was taken by another trainer (%s)", self.directory,
                              describe(current) if current else "removed")
                    return
                self.owner["heartbeat"] = time.time()
                tmp = epath.Path(f"{self.path}.{self.owner['token']}.tmp")
                tmp.write_text(json.dumps(self.owner))
                tmp.replace(self.path)
            except OSError as e:  # a full disk must not kill the trainer from this thread
                log.warning("%s: heartbeat not written (%s)", self.path, e)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still this trainer's."""
        if not self.held:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        current = self._read()
        if current is not None and current.get("token") == self.owner["token"]:
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
