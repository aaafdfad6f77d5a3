"""Checksums of a checkpoint's files, written after Orbax commits and checked
before any restore.

Layout covered: the folders `ITEMS` of `<workdir>/checkpoints/<step>/` and the
manifest `checksums.json` beside them (size and SHA-256 of every file).

Integrity. Orbax writes asynchronously and commits a step by renaming its
temporary folder, so the files are only final once that write has finished.
Process 0 hashes them in a background thread once the commit is done
(checkpointing.Checkpointer): one read of the checkpoint, from the page cache
on local disks, at 0.3-2 GB/s of SHA-256 on one core depending on the CPU,
off the training thread, which only waits for it when the run closes its
checkpointer (the loop's final `checkpoint_wait`). Hashing the files rather
than the arrays in memory also covers the data iterator and meta, needs no
gathering across hosts, and lets a restore name the exact bad file.
Restore first compares every file against the manifest (size, then hash);
with several processes, process 0 alone does (`verify_shared`) and
broadcasts its verdict, so the checkpoint is read for checking once, not
once per process. A missing, truncated or altered file, an unreadable meta
JSON, a failed Orbax read or non-finite parameters mark the checkpoint
corrupt: it is reported by name, moved to `<workdir>/checkpoints_corrupt/`,
and the next older one is tried, with the number of steps that will be
redone logged. A checkpoint without a manifest (killed between commit and
hashing, or written by an older codemix) is restored unverified, with a warning.
"""
from __future__ import annotations

import hashlib
import json
import threading

import jax
import numpy as np
from etils import epath

from codemix.errors import CorruptCheckpoint

ITEMS = ("params", "opt_state", "data", "meta")

MANIFEST = "checksums.json"
_CHUNK = 1 << 22
_MESSAGE_BYTES = 4096  # of a corrupt verdict's message, when process 0 broadcasts it

_hashed = {"bytes": 0, "files": 0}  # by this process since it started (benchmarks read it)
_hashed_lock = threading.Lock()


def hashed() -> dict:
    """{"bytes", "files"} this process has hashed so far, saves and restores together."""
    with _hashed_lock:
        return dict(_hashed)


def _item_files(step_dir: epath.Path) -> list[epath.Path]:
    out = []
    stack = [step_dir / item for item in ITEMS if (step_dir / item).exists()]
    while stack:
        d = stack.pop()
        for child in d.iterdir():
            (stack if child.is_dir() else out).append(child)
    return sorted(out, key=str)


def _sha256(path: epath.Path) -> str:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    with _hashed_lock:
        _hashed["bytes"] += size
        _hashed["files"] += 1
    return h.hexdigest()


def write_manifest(step_dir: epath.Path) -> dict:
    """Record size and SHA-256 of every file of a finished checkpoint."""
    files = {}
    for f in _item_files(step_dir):
        rel = str(f)[len(str(step_dir)) + 1:]
        files[rel] = {"bytes": f.stat().length, "sha256": _sha256(f)}
    manifest = {"algorithm": "sha256", "files": files}
    from codemix import storage

    storage.write_text(step_dir / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def verify_checkpoint(step_dir: epath.Path, only: str | None = None) -> bool:
    """True if every file (under folder `only`, e.g. "params") matches
    `checksums.json`; False if there is none (unverified). Raises
    CorruptCheckpoint naming the first bad file."""
    path = step_dir / MANIFEST
    if not path.exists():
        return False
    fix = "the file was changed or cut short after it was written (disk, copy or sync problem)"
    try:
        files = json.loads(path.read_text())["files"]
    except (ValueError, KeyError) as e:
        raise CorruptCheckpoint(f"{path}: unreadable checksum manifest ({e}); {fix}.") from e
    for rel, want in sorted(files.items()):
        if only is not None and not rel.startswith(only + "/"):
            continue
        f = step_dir / rel
        if not f.exists():
            raise CorruptCheckpoint(f"{f}: missing; {fix}.")
        size = f.stat().length
        if size != want["bytes"]:
            kind = "truncated" if size < want["bytes"] else "longer than written"
            raise CorruptCheckpoint(f"{f}: {kind}, {size:,} bytes where {want['bytes']:,} were written; {fix}.")
        if _sha256(f) != want["sha256"]:
            raise CorruptCheckpoint(f"{f}: content differs from what was written (SHA-256 mismatch); {fix}.")
    return True


def verify_shared(step_dir: epath.Path, only: str | None = None) -> bool:
    """`verify_checkpoint`, run by process 0 only; every process returns its
    result or raises its CorruptCheckpoint (the same message). Call it on every
    process at the same point. Process 0 must be able to read every file (the
    shared storage a multi-host checkpoint is written to anyway)."""
    if jax.process_count() == 1:
        return verify_checkpoint(step_dir, only)
    from jax.experimental import multihost_utils

    verdict, message, error = 0, b"", None
    if jax.process_index() == 0:
        try:
            verdict = 1 if verify_checkpoint(step_dir, only) else 0
        except CorruptCheckpoint as e:
            verdict, message = 2, str(e).encode()[:_MESSAGE_BYTES]
        except Exception as e:  # noqa: BLE001  (re-raised below, after the others have heard of it)
            verdict, message, error = 3, f"{type(e).__name__}: {e}".encode()[:_MESSAGE_BYTES], e
    packed = np.zeros(2 + _MESSAGE_BYTES, np.int32)
    packed[0], packed[1] = verdict, len(message)
    packed[2:2 + len(message)] = np.frombuffer(message, np.uint8)
    packed = np.asarray(multihost_utils.broadcast_one_to_all(packed))
    verdict, text = int(packed[0]), bytes(packed[2:2 + int(packed[1])].astype(np.uint8)).decode(errors="replace")
    if error is not None:
        raise error
    if verdict == 3:
        raise RuntimeError(f"process 0 could not check {step_dir} against its {MANIFEST}: {text}")
    if verdict == 2:
        raise CorruptCheckpoint(text)
    return verdict == 1


def first_line(e: BaseException, limit: int = 300) -> str:
    """The innermost cause's first line: TensorStore's own error names the
    file and byte range, the wrappers around it only repeat the array spec."""
    while e.__cause__ is not None or e.__context__ is not None:
        e = e.__cause__ or e.__context__
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text[:limit]}"
