"""A run's records rewound to the step its state starts from.

When a run (re)starts at step S -- a restored checkpoint, or 0 when it has
none -- whatever it logged after S will be logged again, so `rewind` drops it
first: metrics.jsonl keeps one line per step <= S (the last one written for a
step, which also removes the lines two trainers or an old resume repeated,
and lines that are not JSON, such as a torn last line), heldout/step_<N>.json
files with N > S are deleted, and TensorBoard event files keep only events of
steps <= S. Every step then appears once, and the metrics match the weights.
Only process 0 writes these files, so only it rewinds them.
"""
from __future__ import annotations

import json
import logging

from etils import epath

log = logging.getLogger(__name__)


def _metrics(workdir: epath.Path, step: int) -> None:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return
    by_step: dict[int, str] = {}
    dropped = 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
            s = record["step"]
        except (json.JSONDecodeError, TypeError, KeyError):
            dropped += bool(line.strip())
            continue
        if isinstance(s, int) and s <= step:
            dropped += s in by_step
            by_step[s] = json.dumps(record, sort_keys=True)
        else:
            dropped += 1
    if dropped:
        from codemix import storage

        storage.write_text(path, "".join(by_step[s] + "\n" for s in sorted(by_step)))
        log.info("%s: %d line(s) after step %d, repeated or unreadable removed", path, dropped, step)


def _heldout(workdir: epath.Path, step: int) -> None:
    d = workdir / "heldout"
    if not d.is_dir():
        return
    for p in d.glob("step_*.json"):
        n = p.stem.split("_", 1)[1]
        if n.isdigit() and int(n) > step:
            p.unlink()


def _tensorboard(workdir: epath.Path, step: int) -> None:
    d = workdir / "tensorboard"
    if not d.is_dir():
        return
    files = sorted(p for p in d.glob("events.out.tfevents.*") if not p.name.endswith(".tmp"))
    if not files:
        return
    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2

    from codemix import storage

    # TensorFlow reads and writes them locally; a URL workdir's through ram:// (storage.py)
    with storage.tf_readable(d) as readable, storage.tf_writable(d) as writable:
        for p in files:
            kept, dropped = [], 0
            try:
                for raw in tf.data.TFRecordDataset(f"{readable}/{p.name}").as_numpy_iterator():
                    if event_pb2.Event.FromString(raw).step <= step:
                        kept.append(raw)
                    else:
                        dropped += 1
            except tf.errors.DataLossError:  # a record cut by a kill: the rest of the file is unreadable
                dropped += 1
            if dropped:
                tmp = f"{writable}/{p.name}.tmp"
                with tf.io.TFRecordWriter(tmp) as w:
                    for raw in kept:
                        w.write(raw)
                tf.io.gfile.rename(tmp, f"{writable}/{p.name}", overwrite=True)


def rewind(workdir, step: int) -> None:
    """Drop the metrics lines, held-out records and TensorBoard events of steps after `step`."""
    import jax

    if jax.process_index() != 0:
        return
    workdir = epath.Path(workdir)
    _metrics(workdir, step)
    _heldout(workdir, step)
    _tensorboard(workdir, step)
