"""The run lock on gs:// (a real GCS server): the exclusive create is a write with
if_generation_match=0, so a second trainer is refused naming the first."""
import json
import os

import pytest

from codemix.errors import RunLocked
from codemix.train import run_lock
from codemix.train.run_lock import RunLock


def test_gs_lock_is_exclusive_and_names_its_holder(gcs):
    from etils import epath

    path = epath.Path("gs://bucket/exp/runs/a") / run_lock.LOCK_NAME
    assert run_lock.create_exclusive(path, "first") is True
    assert run_lock.create_exclusive(path, "second") is False
    assert path.read_text() == "first"  # the loser wrote nothing
    path.unlink()

    first = RunLock("gs://bucket/exp/runs/a", heartbeat_s=3600).acquire()
    try:
        assert first.held and json.loads(path.read_text())["pid"] == os.getpid()
        second = RunLock("gs://bucket/exp/runs/a")
        second.owner = {**second.owner, "host": "another-host"}  # a trainer elsewhere, heartbeat fresh
        with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
            second.acquire()
    finally:
        first.release()
    assert not path.exists()
