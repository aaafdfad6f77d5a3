"""A run's workdir: usable as a directory, and a full disk said in one message."""
from __future__ import annotations

import errno
import logging
import re

from etils import epath

from codemix.errors import WorkdirError

log = logging.getLogger(__name__)


def ensure_directory(workdir, what: str = "workdir") -> None:
    """Create `workdir` if missing; WorkdirError if it (or a parent) is a file."""
    from codemix import storage

    storage.check(workdir)  # a gs:// bucket that can't be used: one StorageError, before gcsfs would create it
    path = epath.Path(workdir)
    # on a URL the parents end at the bucket (gs://b, not gs:// or /)
    parents = [p for p in path.parents if not storage.is_url(workdir) or storage.bucket_of(p)]
    for p in (path, *parents):
        if p.exists() and not p.is_dir():
            raise WorkdirError(f"{what} {workdir}: {p} is a file, not a directory; pass another --workdir, "
                               f"or move the file away.")
    path.mkdir(parents=True, exist_ok=True)


def exists(workdir) -> bool:
    return epath.Path(workdir).exists()


def remove_unstarted(workdir, own_files: tuple[str, ...]) -> None:
    """Remove a workdir that a failed start created: its `own_files`, then the folder if that
    leaves it empty. Anything else in it (a user's file, a run's output) keeps it."""
    root = epath.Path(workdir)
    if not root.is_dir():
        return
    for name in own_files:
        (root / name).unlink(missing_ok=True)
    try:
        if not any(root.iterdir()):
            root.rmdir()
    except OSError as e:  # a race or a permission: leaving the empty folder is harmless
        log.debug("left %s in place: %s", workdir, e)


def is_disk_full(e: BaseException) -> bool:
    """True if `e`, or an exception it was raised from, says the disk (or a quota) is full."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(e)
        if "No space left on device" in text or "Disk quota exceeded" in text:
            return True
        e = e.__cause__ or e.__context__
    return False


_PATH_BEFORE_ENOSPC = re.compile(r"((?:/|gs://)[^\s;:]+)[;:]?\s+No space left on device")


def _filename(e: BaseException) -> str | None:
    """The file being written, from an OSError or from the message (TensorFlow's, Orbax's)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.filename:
            return str(e.filename)
        m = _PATH_BEFORE_ENOSPC.search(str(e))
        if m:
            return m.group(1)
        e = e.__cause__ or e.__context__
    return None


class QuietDiskFull(logging.Filter):
    """Drops the traceback Orbax's writer thread logs for a full disk: the run
    ends with `disk_full`'s message instead. Other records pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and is_disk_full(record.exc_info[1]):
            return False
        return "No space left on device" not in record.getMessage()


def disk_full(workdir, e: BaseException, resume_step: int | None) -> WorkdirError:
    """The one message for a full disk: what could not be written, where the run resumes, the fix."""
    name = _filename(e)
    step = re.search(r"/checkpoints/(\d+)[./]", name or "")
    where = f" while writing {'checkpoint step ' + step.group(1) + ': ' if step else ''}{name}" if name else ""
    resume = (f"it resumes from step {resume_step}, its newest complete checkpoint" if resume_step is not None
              else "it has no complete checkpoint yet, so it starts again from step 0")
    return WorkdirError(
        f"the disk holding {workdir} is full (No space left on device){where}. Free space on it (old "
        f"checkpoints of other runs, checkpoints_corrupt/) or copy the workdir to a larger disk, then rerun "
        f"the same command: {resume}, and the steps after it are trained and logged again.")
