"""Time-based checkpoints and the every-step stop question, in one process."""
import pytest

import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
import gin
from codemix import config as cm_config
from codemix.errors import ConfigError
from codemix.train import stop
from codemix.train.trainer import train
from tests.train.helpers import MICRO, TINY_GIN


def _saved(workdir):
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def test_checkpoint_every_minutes_saves_between_step_checkpoints(tmp_path, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(stop.time, "monotonic", lambda: clock[0])
    real = stop.StepAgreement.ask

    def ask(self, step, flag):  # each step takes 20 "minutes" of process 0's clock
        clock[0] += 20 * 60
        return real(self, step, flag)

    monkeypatch.setattr(stop.StepAgreement, "ask", ask)
    cm_config.parse([TINY_GIN], MICRO + ["TRAIN_STEPS=7", "train.checkpoint_every=1000", "train.keep_checkpoints=10",
                                         "train.checkpoint_every_minutes=50", "make_mesh.num_devices=1",
                                         "train.heldout=False"])
    try:
        train(workdir=str(tmp_path))
    finally:
        gin.clear_config()
    # 50 minutes are over at steps 3 (60 min) and 6 (60 min after step 3); step 7 ends the run.
    assert _saved(tmp_path) == [3, 6, 7]


def test_a_signal_is_answered_at_the_step_it_arrived_in():
    agree = stop.StepAgreement(None)
    assert agree.ask(4, False) == 0
    assert agree.ask(5, True) == stop.STOP
    with pytest.raises(ConfigError, match="checkpoint_every_minutes = 0"):
        stop.StepAgreement(0)
