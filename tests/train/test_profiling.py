"""train.profile_steps writes a profiler trace; metrics lines' throughput leaves compilation out."""
import json

import pytest

import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
from codemix import config as cm_config
from codemix.train import profiling
from codemix.train.trainer import train
from tests.train.helpers import MICRO, TINY_GIN


@pytest.fixture(scope="module")
def profiled_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("profiled")
    # d_ff=96: a program no other test compiles, and no persistent cache, so the
    # first step really compiles here.
    cm_config.parse([TINY_GIN], MICRO + [
        "TRAIN_STEPS=5", "train.log_every=1", "train.profile_steps=(1, 2)", "train.heldout=False",
        "ModelConfig.d_ff=96", "make_mesh.num_devices=1", 'compilation_cache.directory="off"'])
    summary = train(workdir=str(workdir))
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return workdir, summary, lines


def test_profile_steps_write_an_xplane_trace_in_tensorboards_layout(profiled_run):
    workdir, _, _ = profiled_run
    traces = list((workdir / "tensorboard" / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(traces) == 1, list(workdir.rglob("*"))
    assert traces[0].stat().st_size > 1000


def test_first_metrics_line_does_not_count_the_steps_compilation(profiled_run):
    _, summary, lines = profiled_run
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5]
    compile_seconds = summary["phases"]["compile"]
    # The train step is most of the run's compilation (seconds, here); a step of
    # this model takes milliseconds. Counting the compile would make the first
    # line's step time a large part of it.
    assert compile_seconds > 0.2
    assert lines[0]["step_time"] < 0.1 * compile_seconds, (lines[0]["step_time"], compile_seconds)
    assert lines[0]["tokens_per_sec"] > 0


@pytest.mark.parametrize("bad", [(1,), (-1, 2), (3, 0), "10"])
def test_bad_profile_steps_name_the_setting(bad):
    with pytest.raises(ValueError, match="train.profile_steps"):
        profiling.check_profile_steps(bad)
