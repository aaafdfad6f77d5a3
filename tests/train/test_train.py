"""The train loop end to end: learning, sharding, accumulation, errors."""
import io
import json
import logging
import os
from contextlib import redirect_stderr
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
from codemix import config as cm_config
from codemix.data.pipeline import make_train_iterator
from codemix.data.readers import DataError
from codemix.main import main
from codemix.model import decoder
from codemix.model.config import ModelConfig
from codemix.train import checkpointing, partitioning
from codemix.train.optimizer import make_optimizer, make_schedule
from codemix.train.state import fresh_state, state_layout
from codemix.train.step import jit_train_step, make_train_step
from codemix.train.trainer import train
from tests.train.helpers import MICRO, REPO, TINY_GIN, run_train


def test_loss_falls_on_real_text(tmp_path):
    cm_config.parse([TINY_GIN], MICRO + ["TRAIN_STEPS=40", "make_mesh.num_devices=1"])
    summary = train(workdir=str(tmp_path))
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 41))
    first, last = lines[0]["loss"], np.mean([r["loss"] for r in lines[-5:]])
    assert first > 5.0 and last < first - 2.0, (first, last)  # bytes: ln(384) ~ 5.95 at init
    for key in ("step", "tokens", "loss", "loss/local_text", "tokens/local_text", "lr",
                "grad_norm", "tokens_per_sec", "mfu"):
        assert key in lines[-1]
    assert lines[-1]["tokens"] == pytest.approx(summary["tokens"])
    assert 0 < lines[-1]["mfu"] < 1
    assert "ModelConfig.d_model = 64" in (tmp_path / "operative_config.gin").read_text()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [35, 40]

    # Resuming with another number of processes is allowed (the data position is
    # global); resuming with another data seed is refused with what differs named.
    other = make_train_iterator("local_text", sequence_length=64, batch_size=8, seed=1,
                                process_index=0, process_count=2)
    ckpt = checkpointing.Checkpointer(str(tmp_path), 5, 2, async_save=False)
    with pytest.raises(DataError, match="data position in .*checkpoints/40/data was taken with data seed 0, "
                                        "this run has 1"):
        ckpt.restore(40, {}, {}, other)
    ckpt.close()


def _setup(cfg, mesh, accum=1):
    schedule = make_schedule(10, "cosine", peak=1e-2, warmup_steps=2)
    opt = make_optimizer(schedule)
    layout = state_layout(cfg, opt, mesh)
    state = fresh_state(cfg, opt, layout, seed=0)
    step = jit_train_step(make_train_step(cfg, opt, schedule, 1, accum, layout.row_sharding),
                          layout.shardings, layout.batch_shardings, mesh)
    return state, step, layout.batch_shardings


def _run_steps(cfg, mesh, batches, accum=1):
    state, step, bsh = _setup(cfg, mesh, accum)
    losses = []
    for b in batches:
        state, m = step(state, {k: jax.device_put(v, bsh[k]) for k, v in b.items()})
        losses.append(float(m["loss"]))
    return losses, jax.device_get(state["params"])


@pytest.fixture(scope="module")
def real_batches():
    it = make_train_iterator("local_text", sequence_length=64, batch_size=8, seed=3)
    return [next(it) for _ in range(3)]


CFG = ModelConfig(vocab_size=384, d_model=64, num_layers=2, num_heads=4, num_kv_heads=2,
                  head_dim=16, d_ff=128)


def test_sharded_step_equals_single_device(real_batches):
    one = partitioning.make_mesh(num_devices=1)
    eight = partitioning.make_mesh(data=1, fsdp=4, tensor=2)
    assert len(eight.devices.flat) == 8
    l1, p1 = _run_steps(CFG, one, real_batches)
    l8, p8 = _run_steps(CFG, eight, real_batches)
    np.testing.assert_allclose(l1, l8, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
        np.testing.assert_allclose(a, b, atol=2e-5)


def test_grad_accumulation_equals_one_big_batch(real_batches):
    mesh = partitioning.make_mesh(data=2, fsdp=4, tensor=1)
    l1, p1 = _run_steps(CFG, mesh, real_batches, accum=1)
    l4, p4 = _run_steps(CFG, mesh, real_batches, accum=4)
    np.testing.assert_allclose(l1, l4, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p4)):
        np.testing.assert_allclose(a, b, atol=2e-5)


def test_gin_typo_is_one_clear_error(tmp_path):
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["train", "--gin_file", TINY_GIN, "--workdir", str(tmp_path),
                     "--gin_param", "trian.train_steps=3"])
    assert code == 2
    assert "trian" in err.getvalue() and "gin configuration error" in err.getvalue()
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["train", "--gin_file", "gin/experiments/nope.gin", "--workdir", str(tmp_path)])
    assert code == 2 and "nope.gin" in err.getvalue()


def _save_params(path: Path, cfg: ModelConfig, seed=0):
    params = decoder.init_params(cfg, seed)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(path / "params", params)
    ckptr.wait_until_finished()
    return params


def test_init_from_is_weights_only_and_exact(tmp_path):
    parent = _save_params(tmp_path / "parent", CFG, seed=5)
    mesh = partitioning.make_mesh(num_devices=1)
    _, axes = decoder.graphdef_and_axes(CFG)
    abstract = decoder.abstract_params(CFG)
    loaded, _ = checkpointing.load_params(str(tmp_path / "parent"), abstract,
                                          partitioning.tree_shardings(axes, abstract, mesh))
    for a, b in zip(jax.tree.leaves(parent), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(a, b)


def test_loading_a_runs_weights_logs_no_orbax_metadata_warning(tmp_path, caplog):
    """params/ is one item of a CheckpointManager step; reading its tree
    metadata used to log "Metadata file does not exist" on every load."""
    cm_config.parse([TINY_GIN], MICRO + ["TRAIN_STEPS=2", "make_mesh.num_devices=1"])
    train(workdir=str(tmp_path / "run"))
    cfg = ModelConfig()
    mesh = partitioning.make_mesh(num_devices=1)
    _, axes = decoder.graphdef_and_axes(cfg)
    abstract = decoder.abstract_params(cfg)
    caplog.set_level(logging.WARNING)
    loaded, step = checkpointing.load_params(str(tmp_path / "run"), abstract,
                                             partitioning.tree_shardings(axes, abstract, mesh))
    assert step == 2
    assert jax.tree.structure(loaded) == jax.tree.structure(abstract)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_wrong_shape_init_checkpoint_names_the_parameter(tmp_path):
    _save_params(tmp_path / "parent", CFG.replace(d_model=32))
    cm_config.parse([TINY_GIN], MICRO + ["TRAIN_STEPS=2", "make_mesh.num_devices=1",
                                         f"train.init_from='{tmp_path / 'parent'}'"])
    with pytest.raises(ValueError) as e:
        train(workdir=str(tmp_path / "child"))
    msg = str(e.value)
    assert "'embed'" in msg and "(384, 32)" in msg and "(384, 64)" in msg


def test_missing_init_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpointing.resolve_params_dir(str(tmp_path / "nowhere"))
    os.makedirs(tmp_path / "empty_run" / "checkpoints")
    with pytest.raises(FileNotFoundError, match="no finished checkpoint"):
        checkpointing.resolve_params_dir(str(tmp_path / "empty_run"))


@pytest.mark.slow
def test_relative_workdir_and_init_from_work(tmp_path):
    # `codemix experiment run ... --workdir runs/demo` (the README's command)
    # passes relative paths; Orbax refuses those unless they are made absolute.
    # The micro model: path handling does not depend on the model's size.
    rel = os.path.relpath(tmp_path / "rel_run", REPO)
    run_train(rel, MICRO + ["TRAIN_STEPS=6"])
    steps = sorted(int(p.name) for p in (tmp_path / "rel_run" / "checkpoints").iterdir() if p.name.isdigit())
    assert steps and steps[-1] == 6
    child = os.path.relpath(tmp_path / "child", REPO)
    run_train(child, MICRO + ["TRAIN_STEPS=2", f"train.init_from='{rel}'"])
    assert (tmp_path / "child" / "checkpoints" / "2").is_dir()


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**31 + 5, 2**40, -3])
def test_fresh_state_params_are_decoder_init_params_of_the_seed(seed):
    """The memoized initialiser (seed an input of one program) gives exactly the
    weights of decoder.init_params jitted with the seed a constant (the earlier
    path; op-by-op execution differs from any jitted one in the last bit), and
    is reused across calls."""
    from codemix.train import state as state_mod

    mesh = partitioning.make_mesh(num_devices=1)
    opt = make_optimizer(make_schedule(10, "constant", peak=1e-3, warmup_steps=0))
    layout = state_layout(CFG, opt, mesh)
    got = fresh_state(CFG, opt, layout, seed=seed)["params"]
    want = jax.jit(lambda: decoder.init_params(CFG, seed))()
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(a, b)
    if 0 <= seed < 2**32:
        before = state_mod._jitted_init.cache_info().hits
        fresh_state(CFG, opt, state_layout(CFG, opt, partitioning.make_mesh(num_devices=1)), seed=seed + 1)
        assert state_mod._jitted_init.cache_info().hits == before + 1
