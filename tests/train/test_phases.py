"""A run's time accounted in phases; the per-machine compilation cache."""
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
import gin
from codemix import config as cm_config
from codemix.analysis import phases as phase_tables
from codemix.experiments.summary import format_phases
from codemix.train import compile_cache, phases, stop
from codemix.train.trainer import train
from tests.train.helpers import MICRO, TINY_GIN


def test_phases_cover_the_runs_wall_time_and_stop_is_asked_every_step(tmp_path, monkeypatch):
    checked_at = []
    real = stop.StepAgreement.ask

    def spy(self, step, flag):
        checked_at.append(step)
        return real(self, step, flag)

    monkeypatch.setattr(stop.StepAgreement, "ask", spy)
    cm_config.parse([TINY_GIN], MICRO + ["TRAIN_STEPS=8", "train.log_every=3", "train.checkpoint_every=4",
                                         "make_mesh.num_devices=1"])
    start = time.perf_counter()
    summary = train(workdir=str(tmp_path))
    measured = time.perf_counter() - start
    assert checked_at == list(range(1, 9))  # every step, so a signal costs at most one step

    info = json.loads((tmp_path / "run_info.json").read_text())
    got = info["phases"]
    assert set(got) == set(phases.PHASES)
    assert all(v >= 0 for v in got.values()), got
    wall = info["wall_seconds"]
    # The clock starts inside train(), after its imports and argument set-up, whose
    # length depends on the machine's load: only the upper bound is a property.
    assert 0 < wall <= measured
    assert sum(got.values()) == pytest.approx(wall, rel=0.02)
    for p in ("startup", "data_setup", "compile", "train_steps", "checkpoint_write", "heldout_eval"):
        assert got[p] > 0, (p, got)
    assert got["benchmark_eval"] == 0.0  # no hook, and train() alone runs no benchmarks
    assert got["other"] < 0.15 * wall, got
    assert set(info["compile_cache"]) == {"hits", "misses"}
    assert summary["phases"] == got and summary["train_seconds"] == got["train_steps"]


def test_compile_time_is_moved_out_of_the_phase_it_happened_in():
    clock = phases.PhaseClock()
    try:
        with clock.phase("train_steps"):
            f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum() * 3.0 + 1.0)
            f(jnp.ones((64, 64))).block_until_ready()
            t = time.perf_counter()
            while time.perf_counter() - t < 0.05:  # time that is not compilation
                pass
        snap = clock.snapshot()
    finally:
        clock.close()
    assert snap["phases"]["compile"] > 0
    assert snap["phases"]["train_steps"] >= 0.05
    assert sum(snap["phases"].values()) == pytest.approx(snap["wall_seconds"], rel=1e-6)
    with pytest.raises(ValueError, match="unknown phase 'training'"), clock.phase("training"):
        pass


@pytest.fixture
def restore_cache_config():
    before = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    yield
    jax.config.update("jax_compilation_cache_dir", before[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
    from jax.experimental.compilation_cache import compilation_cache as cc

    cc.reset_cache()


def test_cache_directory_defaults_to_xdg_cache_and_can_be_overridden(tmp_path, monkeypatch):
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compile_cache.resolve() == tmp_path / "home" / ".cache" / "codemix" / "jax"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.resolve() == tmp_path / "xdg" / "codemix" / "jax"
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "env"))
    assert compile_cache.resolve() == tmp_path / "env"
    assert compile_cache.resolve(str(tmp_path / "gin")) == tmp_path / "gin"  # gin wins over the variable
    monkeypatch.setenv(compile_cache.ENV, "off")
    assert compile_cache.resolve() is None


def test_gin_bound_cache_directory_is_used_and_a_recompile_hits_it(tmp_path, restore_cache_config):
    gin.parse_config([f"compilation_cache.directory = '{tmp_path / 'cache'}'",
                      "compilation_cache.min_compile_seconds = 0.0"])
    assert compile_cache.compilation_cache() == tmp_path / "cache"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "cache")

    def compile_once():
        clock = phases.PhaseClock()
        try:
            jax.jit(lambda x: jnp.cos(x) * 7.0 - 2.0)(jnp.arange(5.0)).block_until_ready()
            return clock.snapshot()["compile_cache"]
        finally:
            clock.close()

    first = compile_once()
    jax.clear_caches()  # what a new process starts with
    second = compile_once()
    assert first["misses"] >= 1 and second["hits"] >= 1, (first, second)
    assert any((tmp_path / "cache").iterdir())


def _fake_run(root, name, wall, **seconds):
    d = root / "runs" / name
    d.mkdir(parents=True)
    ph = {p: float(seconds.get(p, 0.0)) for p in phases.PHASES}
    (d / "run_info.json").write_text(json.dumps({"wall_seconds": wall, "phases": ph,
                                                 "compile_cache": {"hits": 2, "misses": 1}}))


def test_phase_tables_sum_over_runs(tmp_path):
    _fake_run(tmp_path, "a", 10.0, startup=1.0, compile=1.0, train_steps=6.0, heldout_eval=2.0)
    _fake_run(tmp_path, "b", 30.0, startup=2.0, compile=4.0, train_steps=14.0, benchmark_eval=10.0)
    (tmp_path / "runs" / "c").mkdir()  # a run that has not started: no run_info.json
    frame = phase_tables.run_phases(tmp_path)
    assert list(frame["run"]) == ["a", "b"]
    totals = phase_tables.phase_totals(frame).set_index("phase")
    assert totals.loc["train_steps", "seconds"] == 20.0
    assert totals.loc["compile", "% of wall"] == pytest.approx(12.5)
    assert phase_tables.productive_share(frame) == pytest.approx(32.0 / 40.0)
    per_run = phase_tables.per_run_compile(frame).set_index("run")
    np.testing.assert_allclose(per_run["% steps+eval"], [80.0, 80.0])
    text = format_phases(tmp_path, ["a", "b", "c"])
    assert "2 runs, 40 s of wall time, 80.0% in train steps and evaluation" in text
    assert "4 hits, 2 misses" in text
    assert "| train_steps" in phase_tables.markdown(tmp_path)
